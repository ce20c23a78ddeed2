"""A run's lifecycle: open the input, plan its columns, scan its ids, stream its rows
(mapped and validated, through the columnar path where it applies), write the reports.

:func:`validate` is the whole of a validation run; the sync engine and the planner open
their runs here too (:class:`Run`).
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from leadsync.checks import checked_chunks, prechecked, prechecks_apply, rows_of
from leadsync.config import Config
from leadsync.errors import ExitCode
from leadsync.mapper import (
    fast_path_applies,
    map_chunk,
    one_per_row,
    plan_table,
)
from leadsync.model import CheckedChunk, ColumnPlan, MappedRow, Outcome
from leadsync.reader import SheetMoved, Table, open_table
from leadsync.report import ReportWriter, spawn_xlsx_worker
from leadsync.summary import build_summary, file_sha256
from leadsync.threads import in_thread
from leadsync.validator import (
    IdScan,
    scan_ids,
    validate_rows,
)

Progress = Callable[[int, int, Counter[str]], None]  # rows done, rows in all, counts so far


class RunObserver(Protocol):
    """What :func:`validate` shows each chunk or row it reports (the app's grid)."""

    def opened(self, headers: tuple[str, ...]) -> None: ...

    def checked(self, checked: CheckedChunk) -> None: ...

    def row(self, row: MappedRow, cells: tuple[Any, ...]) -> None: ...


@dataclass
class RunResult:
    """What a run produced: the summary (as in summary.json) and where the reports are."""

    summary: dict[str, Any]
    report_dir: Path
    exit_code: ExitCode
    notices: list[str] = field(default_factory=list)


def _size(path: Path) -> int:
    """The file's size in bytes (0 if it cannot be looked at: opening it says why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a little randomness."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# From this size a file surely has enough rows to need a report.xlsx process (~200k rows
# of a typical export): it is started before the id scan.
_EARLY_XLSX_BYTES = 32 << 20


@dataclass
class Run:
    """The parts every run opens the same way: input, column plan, id scan, reports."""

    config: Config
    run_id: str
    started: dt.datetime
    clock: float
    table: Table
    plan: ColumnPlan
    scan: IdScan
    writer: ReportWriter
    digest: Future[str]  # the file's SHA-256, computed in a thread while the rows are read
    office_ids: frozenset[int] | None = None
    # the rows checked as the file was read, and then the rest (see prechecked)
    held: Iterator[CheckedChunk] | None = None
    early: int = 0  # how many of them were checked before the file was read through

    @property
    def sha256(self) -> str:
        return self.digest.result()

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: Config,
        report_dir: str | Path | None,
        xlsx_report: bool,
        *,
        precheck: bool = False,
        office_ids: Collection[int] | None = None,
    ) -> Run:
        """Open ``path``, plan it, scan its ids, open its reports. ``precheck``: a run that
        sends nothing may check the rows as the file is read (:func:`prechecked`); they
        are in ``held``."""
        started, clock, run_id = dt.datetime.now(dt.UTC), time.perf_counter(), new_run_id()
        # the file's digest and the report.xlsx process's start-up run on the other core
        # while this one opens the file (its encoding pass reads every byte on one core)
        source = Path(path)
        digest = in_thread(file_sha256, source, name="leadsync-digest")
        early = None
        if xlsx_report and _size(source) >= _EARLY_XLSX_BYTES:
            early = spawn_xlsx_worker()
        try:
            table, plan, scan, held, ahead = _opened(path, config, precheck, office_ids)
            if scan.rows == 0:
                table.notices.append(f"{table.path.name} has a header but no data rows")
            directory = Path(report_dir) if report_dir else Path(config.report_root) / run_id
            writer = ReportWriter(
                directory,
                table,
                xlsx=xlsx_report,
                total_rows=scan.rows,
                xlsx_full_rows=config.xlsx_full_rows,
                xlsx_attention_rows=config.xlsx_attention_rows,
                xlsx_process=early,
                id_column=plan.id_index,
                lead_ids=config.create,
            )
        except BaseException:
            if early is not None:
                early.kill()
                early.wait()
            raise
        ids = frozenset(office_ids) if office_ids is not None else None
        return cls(
            config, run_id, started, clock, table, plan, scan, writer, digest, ids, held, ahead
        )

    def rows(self, fast: bool = True) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
        """Every row, mapped and validated, with its original cells, chunk by chunk."""
        return validated_rows(
            self.table, self.plan, self.config, self.scan, self.office_ids, fast=fast
        )

    def finish(
        self, command: str, exit_code: ExitCode, extra: dict[str, Any] | None = None
    ) -> RunResult:
        summary = build_summary(
            command,
            self.run_id,
            self.table,
            self.plan,
            self.writer.counts,
            self.writer.codes,
            self.started,
            self.clock,
            exit_code,
            reports={k: str(v) for k, v in self.writer.paths.items()},
            config=self.config,
            extra=extra,
            sha256=self.sha256,
        )
        self.writer.close(summary)
        return RunResult(summary, self.writer.directory, exit_code, list(self.table.notices))


def validated_rows(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None = None,
    *,
    fast: bool = True,
) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
    """Every row of ``table``, mapped and validated, with its original cells.

    ``fast`` uses the columnar path where it applies (rows it clears get their payload
    from :func:`~leadsync.mapper.payload_json`); ``fast=False`` maps every row one by
    one. A leadsync report read back as input has a line per problem: each of its rows
    is yielded once.
    """
    if fast and fast_path_applies(plan, config):
        for checked in checked_chunks(table, plan, config, scan, office_ids):
            yield from rows_of(checked, plan)
        return

    def row_by_row() -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
        for chunk in table.chunks(config.chunk_rows, fast=fast):
            rows = map_chunk(chunk, plan, config)
            validate_rows(rows, plan, config, scan.duplicates, office_ids, scan.people)
            yield from zip(rows, chunk.rows(), strict=True)

    yield from one_per_row(row_by_row(), plan)


def mapped_rows(
    path: str | Path,
    config: Config | None = None,
    *,
    fast: bool = True,
) -> Iterator[MappedRow]:
    """Every row of ``path``, mapped and validated, in order: its lead id, the payload
    a sync would send (before change detection) and its problems. Writes nothing.

    ``fast=False`` maps every row one by one: the reference the columnar path is tested
    against (same rows, same payloads, same problems).
    """
    config = config or Config()
    table, plan, scan = open_rows(path, config)
    for row, _ in validated_rows(table, plan, config, scan, fast=fast):
        yield row


def open_rows(path: str | Path, config: Config) -> tuple[Table, ColumnPlan, IdScan]:
    """Open ``path``, plan its columns and scan its ids: what reading its rows needs."""
    table, plan, scan, _, _ = _opened(path, config, False, None)
    return table, plan, scan


def _opened(
    path: str | Path, config: Config, precheck: bool, office_ids: Collection[int] | None
) -> tuple[Table, ColumnPlan, IdScan, Iterator[CheckedChunk] | None, int]:
    """:func:`open_rows`, and (``precheck``, where it applies) the rows checked as they
    were read. A workbook whose later pieces show cells left of its header's first column
    is opened again, whole (its header is not what the first piece showed)."""
    table = open_table(path, config.sheet, config.xlsx_piece_bytes, date_order=config.date_order)
    try:
        plan = plan_table(table, config)
        if precheck and table.pieced and prechecks_apply(plan, config):
            return table, plan, *prechecked(table, plan, config, office_ids)
        return table, plan, scan_table(table, plan, config), None, 0
    except SheetMoved:
        table.close()
        table = open_table(path, config.sheet, 0, date_order=config.date_order)
        plan = plan_table(table, config)
        return table, plan, scan_table(table, plan, config), None, 0
    except BaseException:
        table.close()  # no reading ahead for a run that ends here
        raise


def scan_table(table: Table, plan: ColumnPlan, config: Config) -> IdScan:
    """The pass before any row is sent: row count and repeated ids; with ``--create``
    also the people more than one new row would create."""
    scan = scan_ids(table, plan, config.chunk_rows)
    if config.create:
        from dataclasses import replace

        from leadsync.creating import scan_people

        scan = replace(scan, people=scan_people(table, plan, config))
    return scan


def validate(
    path: str | Path,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    progress: Progress | None = None,
    xlsx_report: bool = True,
    command: str = "validate",
    office_ids: Collection[int] | None = None,
    fast: bool = True,
    observer: RunObserver | None = None,
) -> RunResult:
    """Read, map and validate every row of ``path``; write the reports; send nothing.

    Raises :class:`~leadsync.errors.LeadsyncError` when the file as a whole cannot be
    used (missing, unreadable, no id column); row problems are reported, not raised.
    ``fast=False`` maps and checks every row one by one (the reference the columnar
    fast path is tested against; same verdicts, same reports, slower). ``observer``
    sees every checked chunk (or every row, off the columnar path) as it is reported.
    """
    config = config or Config()
    run = Run.open(path, config, report_dir, xlsx_report, precheck=fast, office_ids=office_ids)
    if observer is not None:
        observer.opened(run.table.headers)
    writer = run.writer
    if fast and fast_path_applies(run.plan, config):
        chunks = (
            run.held
            if run.held is not None
            else checked_chunks(
                run.table, run.plan, config, run.scan, run.office_ids, payloads=False
            )
        )
        # reports for chunk k are written (mostly outside the GIL) while chunk k+1 is checked
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadsync-report") as pool:
            pending: deque[tuple[Future[None], int]] = deque()
            done = 0
            for checked in chunks:
                pending.append((pool.submit(writer.write_chunk, checked), len(checked.chunk)))
                if observer is not None:
                    observer.checked(checked)
                # the chunks checked early were all in memory: as many may wait
                while len(pending) > 1 + run.early:
                    future, rows = pending.popleft()
                    future.result()
                    done += rows
                    if progress is not None:
                        progress(done, run.scan.rows, writer.counts)
            for future, _ in pending:
                future.result()
    else:
        for done, (row, cells) in enumerate(run.rows(fast=fast), start=1):
            if row.blank:
                writer.write(row, Outcome.SKIPPED_BLANK, cells)
            elif row.problems:
                writer.write(row, Outcome.INVALID, cells, problems=row.problems)
            else:
                writer.write(row, Outcome.VALID, cells, payload=row.payload)
            if observer is not None:
                observer.row(row, cells)
            if progress is not None and done % 1000 == 0:
                progress(done, run.scan.rows, writer.counts)
    exit_code = ExitCode.ROWS_FAILED if writer.counts[Outcome.INVALID] else ExitCode.OK
    return run.finish(command, exit_code)
