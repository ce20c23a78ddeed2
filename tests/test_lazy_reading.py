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
        leadsync.validate(path, config, report_dir=out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_csv(small, 3_000)
    write_csv(large, 18_000)
    assert large.stat().st_size > 5.5 * small.stat().st_size
    peak_bytes(small, tmp_path / "warm-up")  # imports and caches are not the file's cost
    peak_small = peak_bytes(small, tmp_path / "s")
    peak_large = peak_bytes(large, tmp_path / "l")
    # what grows with the file: 8 bytes per id hash and the problem rows' comments
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
