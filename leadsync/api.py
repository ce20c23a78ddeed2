"""The library API: what the CLI calls, usable on its own.

>>> result = leadsync.validate("export.xlsx")          # doctest: +SKIP
>>> result.exit_code, result.summary["outcomes"]["invalid"]   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync import __version__, defaults
from leadsync.config import Config
from leadsync.errors import ExitCode
from leadsync.mapper import ColumnPlan, map_chunk, plan_columns
from leadsync.reader import Table, open_table
from leadsync.report import OUTCOMES, ReportWriter
from leadsync.validator import scan_ids, validate_rows

Progress = Callable[[int], None]  # called with the number of rows just finished


@dataclass
class RunResult:
    """What a run produced: the summary (as in summary.json) and where the reports are."""

    summary: dict[str, Any]
    report_dir: Path
    exit_code: ExitCode
    notices: list[str] = field(default_factory=list)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a little randomness."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def validate(
    path: str | Path,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    progress: Progress | None = None,
    xlsx_report: bool = True,
) -> RunResult:
    """Read, map and validate every row of ``path``; write the reports; send nothing.

    Raises :class:`~leadsync.errors.LeadsyncError` when the file as a whole cannot be
    used (missing, unreadable, no id column); row problems are reported, not raised.
    """
    config = config or Config()
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    run_id = new_run_id()
    table = open_table(path, config.sheet)
    plan = plan_columns(table.headers, config)
    scan = scan_ids(table, plan)
    directory = Path(report_dir) if report_dir else Path(defaults.REPORT_ROOT) / run_id
    writer = ReportWriter(
        directory,
        table,
        xlsx=xlsx_report,
        total_rows=scan.rows,
        xlsx_full_rows=config.xlsx_full_rows,
    )
    for chunk in table.chunks(config.chunk_rows):
        rows = map_chunk(chunk, plan, config)
        validate_rows(rows, plan, config, scan.duplicates)
        originals = chunk.frame.itertuples(index=False, name=None)
        for row, cells in zip(rows, originals, strict=True):
            if row.blank:
                writer.write(row, "skipped_blank", cells)
            elif row.problems:
                writer.write(row, "invalid", cells, problems=row.problems)
            else:
                writer.write(row, "valid", cells, payload=row.payload)
        if progress is not None:
            progress(len(rows))
    counts = writer.counts
    exit_code = ExitCode.ROWS_FAILED if counts["invalid"] else ExitCode.OK
    summary = build_summary(
        "validate",
        run_id,
        table,
        plan,
        counts,
        writer.codes,
        started,
        clock,
        exit_code,
        reports={k: str(v) for k, v in writer.paths.items()},
        config=config,
    )
    writer.close(summary)
    return RunResult(summary, directory, exit_code, list(table.notices))


def build_summary(
    command: str,
    run_id: str,
    table: Table,
    plan: ColumnPlan,
    counts: Counter[str],
    codes: Counter[str],
    started: dt.datetime,
    clock: float,
    exit_code: ExitCode,
    *,
    reports: dict[str, str],
    config: Config,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run summary: what summary.json holds and what ``--json`` prints."""
    elapsed = time.perf_counter() - clock
    rows = sum(counts.values())
    summary: dict[str, Any] = {
        "leadsync_version": __version__,
        "command": command,
        "run_id": run_id,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 else None,
        "file": {
            "path": str(table.path),
            "name": table.path.name,
            "format": table.format,
            "sheet": table.sheet,
            "encoding": table.encoding,
            "delimiter": table.delimiter,
            "size_bytes": table.path.stat().st_size,
            "sha256": file_sha256(table.path),
        },
        "mapping": config.mapping_path,
        "rows": rows,
        "outcomes": {o: counts.get(o, 0) for o in OUTCOMES},
        "problems_by_code": dict(codes.most_common()),
        "unmapped_columns": list(plan.unmapped),
        "notices": list(table.notices),
        "exit_code": int(exit_code),
        "reports": reports,
    }
    if extra:
        summary.update(extra)
    return summary
