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

from leadsync.config import Config
from leadsync.errors import ExitCode
from leadsync.faulty import reference_rows
from leadsync.mapper import (
    Judgments,
    fast_path_applies,
    fields_sent,
    lead_id_texts,
    map_chunk,
    map_columns,
    one_per_row,
    payload_json,
    plan_table,
)
from leadsync.model import CheckedChunk, ColumnPlan, MappedRow, Outcome
from leadsync.reader import Chunk, SheetMoved, Table, open_table
from leadsync.report import ReportWriter, spawn_xlsx_worker
from leadsync.summary import build_summary, file_sha256
from leadsync.threads import in_thread, prefetch
from leadsync.validator import (
    IdScan,
    IdTally,
    check_columns,
    field_faults,
    name_problems,
    names_absent,
    names_missing_only,
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
            yield from _rows_of(checked, plan)
        return

    def row_by_row() -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
        for chunk in table.chunks(config.chunk_rows, fast=fast):
            rows = map_chunk(chunk, plan, config)
            validate_rows(rows, plan, config, scan.duplicates, office_ids, scan.people)
            yield from zip(rows, chunk.rows(), strict=True)

    yield from one_per_row(row_by_row(), plan)


def _columnar_rows(
    chunk: Any,
    columns: Any,
    plan: ColumnPlan,
    lead_ids: Any,
    where: list[int],
    payloads: bool = True,
) -> list[MappedRow]:
    """The rows at ``where`` as the columnar path built them: lead id, payload (none for
    a blank row, or where ``payloads`` is False) and ``--match-by`` value."""
    import json

    import pyarrow as pa

    at = pa.array(where, pa.int64())
    texts = payload_json(columns, plan).take(at).to_pylist() if payloads else None
    leads = lead_ids.take(at).to_pylist()
    match = columns.match
    matches = match.array.take(at).to_pylist() if match is not None else [""] * len(where)
    rows = []
    for k, i in enumerate(where):
        blank = bool(columns.blank[i])
        payload = {} if blank or texts is None else json.loads(texts[k])
        row = MappedRow(chunk.row_numbers[i], leads[k] or None, payload, blank=blank)
        row.match = matches[k] or None
        rows.append(row)
    return rows


def _unnamed_rows(
    chunk: Any,
    columns: Any,
    plan: ColumnPlan,
    lead_ids: Any,
    unnamed: Any,
    payloads: bool = True,
) -> list[tuple[int, MappedRow]]:
    """The rows that lack only a required name (see
    :func:`~leadsync.validator.names_missing_only`): the payload the columnar path
    built (where wanted), and the rule book's problems."""
    import numpy as np

    where = np.flatnonzero(unnamed).tolist()
    rows = _columnar_rows(chunk, columns, plan, lead_ids, where, payloads)
    absent = [
        (fname, rows_absent[where]) for fname, rows_absent in names_absent(columns, plan).items()
    ]
    add_problems = name_problems(plan)
    for k, row in enumerate(rows):
        add_problems(row, [fname for fname, lacking in absent if lacking[k]])
    return list(zip(where, rows, strict=True))


def _rows_of(
    checked: CheckedChunk, plan: ColumnPlan
) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
    """A checked chunk's rows as :class:`MappedRow` objects, in order."""
    chunk = checked.chunk
    rows = dict(checked.slow)
    cleared = [i for i in range(len(chunk)) if i not in rows]
    built = _columnar_rows(chunk, checked.columns, plan, checked.lead_ids, cleared)
    rows.update(zip(cleared, built, strict=True))
    for i, cells in enumerate(chunk.rows()):
        yield rows[i], cells


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
    table = open_table(path, config.sheet, config.xlsx_piece_bytes)
    try:
        plan = plan_table(table, config)
        if precheck and table.pieced and _prechecks(plan, config):
            return table, plan, *prechecked(table, plan, config, office_ids)
        return table, plan, scan_table(table, plan, config), None, 0
    except SheetMoved:
        table.close()
        table = open_table(path, config.sheet, 0)
        plan = plan_table(table, config)
        return table, plan, scan_table(table, plan, config), None, 0
    except BaseException:
        table.close()  # no reading ahead for a run that ends here
        raise


def _prechecks(plan: ColumnPlan, config: Config) -> bool:
    return (
        plan.id_index is not None
        and plan.report_row_index is None
        and not config.create
        and fast_path_applies(plan, config)
    )


# The rows of the pieces left when the whole sheet is parsed are read out of calamine for
# their ids, and kept for their checks up to this many (~60 MB of cells); past it, read again
_KEPT_ROWS = 100_000


def prechecked(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    office_ids: Collection[int] | None,
    *,
    stream_once_read: bool = True,
) -> tuple[IdScan, Iterator[CheckedChunk], int]:
    """Check a workbook's first pieces while calamine parses the rest of it: each piece's
    ids are counted, then its rows are checked against the ids repeated so far. Once the
    whole sheet is parsed, the rest of its ids are counted and the rest of its rows are
    checked as they are handed on. A row's verdict depends on the rest of the file only
    through its id being repeated, so a piece checked early that holds an id found
    repeated later is checked again: the verdicts are those of :func:`checked_chunks`
    after a whole id pass, to the row. ``stream_once_read=False``: every piece is checked
    before the last is counted (and checked again if it must be)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    index = plan.id_index
    assert index is not None
    tally = IdTally()
    judged: Judgments = {}

    def checked(scan: IdScan, chunks: Iterator[Chunk]) -> Iterator[CheckedChunk]:
        return checked_chunks(
            table, plan, config, scan, office_ids, payloads=False, chunks=chunks, judged=judged
        )

    early: list[tuple[list[CheckedChunk], pa.Array, frozenset[str]]] = []
    parts = table.parts(once=True)  # a piece is let go with its part
    for part in parts:
        blocks = [tally.add(b) for b in part.column_text(table, index, config.chunk_rows)]
        scan = tally.scan()
        done = list(checked(scan, prefetch(part.fast_chunks(table, config.chunk_rows))))
        ids = pa.concat_arrays(blocks) if blocks else pa.array([], pa.string())
        early.append((done, ids, scan.duplicates))
        if stream_once_read and table.read_through:
            break
    rest = list(parts)  # parsed: no waiting
    kept = 0
    for part in rest:
        for block in part.column_text(table, index, config.chunk_rows):
            tally.add(block)
            kept += len(block)
        if kept > _KEPT_ROWS:
            part.release()  # read out again when checked
    scan = tally.scan()

    def handed() -> Iterator[CheckedChunk]:
        while early:
            done, ids, used = early.pop(0)
            later = scan.duplicates - used
            if later:
                # the scan's own id texts, row by row: the rows whose id turned out repeated
                hits = to_numpy_bool(pc.is_in(ids, pa.array(sorted(later), pa.string())))
                if hits.any():
                    starts = np.cumsum([0, *(len(c.chunk) for c in done)]).tolist()
                    done = [
                        _rechecked(c, plan, config, scan, office_ids, later, hits[a:b])
                        for c, a, b in zip(done, starts, starts[1:], strict=False)
                    ]
            yield from done
        while rest:
            part = rest.pop(0)
            yield from checked(scan, prefetch(part.fast_chunks(table, config.chunk_rows)))

    return scan, handed(), sum(len(done) for done, _, _ in early)


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


def _rechecked(
    checked: CheckedChunk,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None,
    later: frozenset[str],
    hit: Any,
) -> CheckedChunk:
    """``checked`` (with ``payloads=False``) as :func:`checked_chunks` checks it against
    ``scan``, whose repeated ids add ``later`` to those it was checked against: only the
    rows holding one of those ids (``hit``: by the scan's reading of the id) can change,
    and they go to the reference path (as there: an id on another row is never cleared
    column by column)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    columns = checked.columns
    if columns.ids is not None:  # ... and by the text the columnar checks look up
        found = pa.array(sorted(later), pa.string())
        hit = hit | to_numpy_bool(pc.is_in(columns.ids.array, value_set=found))
    positions = np.flatnonzero(hit & ~columns.blank).tolist()
    if not positions:
        return checked
    faults = field_faults(columns, config, office_ids)
    again = reference_rows(
        checked.chunk,
        columns,
        plan,
        config,
        positions,
        faults,
        scan.duplicates,
        office_ids,
        scan.people,
        payloads=False,
    )
    again_at = set(positions)
    kept = [(k, row) for k, row in checked.slow if k not in again_at]
    slow = sorted([*kept, *again], key=lambda entry: entry[0])
    return CheckedChunk(checked.chunk, columns, checked.lead_ids, checked.fields, slow)


def checked_chunks(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None,
    *,
    payloads: bool = True,
    chunks: Iterator[Chunk] | None = None,
    judged: Judgments | None = None,
) -> Iterator[CheckedChunk]:
    """Every chunk (of ``table``, or ``chunks`` of it) through the columnar fast path;
    the rows it cannot clear are mapped and validated row by row (they carry the
    problems). ``payloads=False``: an invalid row's payload is not wanted (see
    :mod:`leadsync.faulty`). ``judged``: the distinct texts judged so far (kept across
    calls)."""
    import numpy as np
    import pyarrow as pa

    duplicates = scan.duplicates
    if judged is None:
        judged = {}  # one file's distinct texts, judged once across its chunks
    if chunks is None:
        chunks = prefetch(table.chunks(config.chunk_rows))
    for chunk in chunks:
        columns = map_columns(chunk, plan, config, judged)
        faults = field_faults(columns, config, office_ids)
        cleared = check_columns(
            columns, plan, config, duplicates, office_ids, scan.people, faults=faults
        )
        unnamed = names_missing_only(
            columns, plan, config, cleared, duplicates, office_ids, faults=faults
        )
        positions = np.flatnonzero(~(cleared | columns.blank | unnamed)).tolist()
        slow = reference_rows(
            chunk,
            columns,
            plan,
            config,
            positions,
            faults,
            duplicates,
            office_ids,
            scan.people,
            payloads=payloads,
        )
        lead_ids = (
            # the id cell's value, as the row-by-row path reads it: a 1213 that shows
            # 1,213 (#,##0) is lead 1213, in the URL, the journal and the reports
            lead_id_texts(columns.ids)
            if columns.ids is not None
            else pa.repeat(pa.scalar("", pa.string()), len(chunk))  # --match-by alone
        )
        if unnamed.any():
            unnamed_rows = _unnamed_rows(chunk, columns, plan, lead_ids, unnamed, payloads)
            slow = sorted([*slow, *unnamed_rows])
        fields = fields_sent(columns, plan)
        yield CheckedChunk(chunk, columns, lead_ids, fields, slow)
