"""Reading stays lazy: memory for a 6× larger file stays flat (Python-level allocations)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import leadsync
from benchmarks.gen import write_csv
from leadsync.config import Config


def peak_bytes(path: Path, out: Path) -> int:
    config = Config(chunk_rows=500, xlsx_full_rows=0)
    tracemalloc.start()
    try:
        # report.xlsx is left out: XlsxWriter holds the problem rows' comments until it
        # saves (they grow with the problems, not the file; benchmarks/ show the RSS)
        leadsync.validate(path, config, report_dir=out, xlsx_report=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_csv(small, 10_000)  # over 1 MB: the encoding check reads 1 MB blocks
    write_csv(large, 60_000)
    assert large.stat().st_size > 5.5 * small.stat().st_size
    peak_bytes(small, tmp_path / "warm-up")  # imports and caches are not the file's cost
    peak_small = peak_bytes(small, tmp_path / "s")
    peak_large = peak_bytes(large, tmp_path / "l")
    # what grows with the file: the ids kept by the duplicate scan (in pyarrow, not traced)
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
