"""Report stage: failures.csv, successes.csv, summary.json and report.xlsx (spec §6).

Rows are appended as they finish, so a crash leaves a partial but true report. Every file
is created with mode 0600: reports hold personal data.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from leadsync.csvsafe import neutralise
from leadsync.defaults import (
    XLSX_ATTENTION_ROWS,
    XLSX_FULL_ROWS,
)
from leadsync.errors import LeadsyncError
from leadsync.model import (
    FAILURE_COLUMNS,
    FAILURE_OUTCOMES,
    SUCCESS_COLUMNS,
    CheckedChunk,
    MappedRow,
    Outcome,
    Problem,
)
from leadsync.private import open_private
from leadsync.reader import Table, display_text
from leadsync.xlsx_report import Gate, SheetSpec, XlsxReport
from leadsync.xlsx_rows import SheetRows

if TYPE_CHECKING:
    import pyarrow as pa

# a chunk's outcome codes: 0 valid, 1 skipped_blank (cleared by the fast path), 2 invalid
_OUTCOME_OF_CODE = (Outcome.VALID.value, Outcome.SKIPPED_BLANK.value, Outcome.INVALID.value)


class ReportWriter:
    """Writes the four reports for one run, a row at a time."""

    def __init__(
        self,
        directory: Path,
        table: Table,
        *,
        xlsx: bool = True,
        total_rows: int = 0,
        xlsx_full_rows: int = XLSX_FULL_ROWS,
        xlsx_attention_rows: int = XLSX_ATTENTION_ROWS,
        xlsx_process: Any | None = None,
        id_column: int | None = None,
        lead_ids: bool = False,
    ) -> None:
        """``xlsx_process``: a report.xlsx process started early (see
        :func:`spawn_xlsx_worker`), used if the report is large enough to need one."""
        self.directory = directory
        self.table = table
        self.headers = list(table.headers)
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self._problem_texts: dict[tuple[Any, ...], str] = {}
        self.paths = {
            "failures": directory / "failures.csv",
            "successes": directory / "successes.csv",
            "summary": directory / "summary.json",
        }
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._failures_fh = open_private(self.paths["failures"])
            self._successes_fh = open_private(self.paths["successes"])
        except OSError as exc:  # a --report-dir that cannot be: the user's to fix
            raise LeadsyncError(
                f"cannot write the reports to {directory}: {exc.strerror or exc} "
                "(choose another --report-dir)"
            ) from None
        self._failures = csv.writer(self._failures_fh)
        self._successes = csv.writer(self._successes_fh)
        self._spool = _Spool(
            self._successes_fh.buffer.write,  # type: ignore[attr-defined]
            first=self._successes_fh.flush,
        )
        self._failures.writerow([*FAILURE_COLUMNS, *map(neutralise, self.headers)])
        self._successes.writerow([*SUCCESS_COLUMNS, *map(neutralise, self.headers)])
        full = total_rows <= xlsx_full_rows
        sheet = SheetSpec(
            table.headers,
            table.sheet,
            table.header_row,
            xlsx_attention_rows,
            id_column,
            lead_ids,
        )
        rows_expected = total_rows if full else total_rows // 100  # ~1% need attention
        self._xlsx: XlsxReport | _XlsxProcess | None = None
        if xlsx and rows_expected >= _XLSX_PROCESS_ROWS:
            path = directory / "report.xlsx"
            self._xlsx = _XlsxProcess(path, sheet, full=full, process=xlsx_process)
            xlsx_process = None
        elif xlsx:
            self._xlsx = XlsxReport(directory / "report.xlsx", sheet, full=full)
        if xlsx_process is not None:  # started early, not needed after all
            _finish(xlsx_process)
        if self._xlsx is not None:
            self.paths["report_xlsx"] = self._xlsx.path

    def write(
        self,
        row: MappedRow,
        outcome: str,
        cells: Sequence[Any],
        *,
        problems: Sequence[Problem] = (),
        http_status: int | None = None,
        fields_sent: Sequence[str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one row's outcome in every report."""
        self.counts[outcome] += 1
        if outcome in FAILURE_OUTCOMES:
            self._failure(row, outcome, cells, problems, http_status)
        else:  # valid, updated, unchanged, skipped_blank: every row is in one of the two
            lead, status, original = _line_parts(row, http_status, cells)
            sent = ",".join(fields_sent if fields_sent is not None else (payload or {}))
            self._successes.writerow([row.row, lead, outcome, status, sent, *original])
        if self._xlsx is not None:
            self._xlsx.write(row.row, cells, outcome, problems, row.lead_id)

    def _failure(
        self,
        row: MappedRow,
        outcome: str,
        cells: Sequence[Any],
        problems: Sequence[Problem],
        http_status: int | None,
    ) -> None:
        """A failed row's lines."""
        lead, status, original = _line_parts(row, http_status, cells)
        items = problems or [Problem(row=row.row, code=outcome, message=outcome, stage="send")]
        for p in items:
            self.codes[p.code] += 1
            self._failures.writerow(
                [row.row, lead, *_problem_fields(outcome, p), status, *original]
            )

    def _invalid_lines(
        self, originals: list[pa.Array], order: list[int], rows: list[MappedRow]
    ) -> None:
        """The failures.csv lines of a chunk's invalid rows (at ``order``), the very bytes
        :meth:`_failure` writes, built column by column: only the problems are looked at
        one by one. ``originals``: the chunk's cells as CSV fields, a column each."""
        import pyarrow as pa

        from leadsync.columnar import Cells, csv_lines

        owners: list[int] = []  # each line's row (of ``rows``)
        texts: list[str] = []  # each line's problem, outcome to message
        problem_text, codes = self._problem_text, self.codes
        for k, row in enumerate(rows):
            for p in row.problems:
                owners.append(k)
                texts.append(problem_text(Outcome.INVALID, p))
            codes.update(p.code for p in row.problems)
        self.counts[Outcome.INVALID] += len(rows)
        at = pa.array(owners, pa.int64())
        # each line's row in the chunk: the chunk's fields are taken, not built again
        line_rows = pa.array([order[k] for k in owners], pa.int64())
        leads = pa.array([row.lead_id or "" for row in rows], pa.string())
        fields = [
            _numbers_text([row.row for row in rows]).take(at),
            Cells(leads).csv_field().take(at),  # neutralised, quoted as csv.writer quotes
            pa.array(texts, pa.string()),
            "",  # no HTTP status
            *(column.take(line_rows) for column in originals),
        ]
        self._failures_fh.flush()  # the lines csv.writer wrote go first
        for block in csv_lines(fields):
            self._failures_fh.buffer.write(block)  # type: ignore[attr-defined]

    def _problem_text(self, outcome: str, p: Problem) -> str:
        """A problem's part of a failures.csv line as CSV text (outcome to message), from
        memory when another row had it: most invalid rows share their messages."""
        from leadsync.columnar import csv_text

        key = (outcome, p.stage, p.field, p.code, p.message)
        text = self._problem_texts.get(key)
        if text is None:
            if len(self._problem_texts) >= 4096:
                self._problem_texts.clear()  # a file of ever-new messages: bounded memory
            text = self._problem_texts[key] = ",".join(map(csv_text, _problem_fields(outcome, p)))
        return text

    def write_chunk(self, checked: CheckedChunk) -> None:
        """Record a validated chunk: the rows the fast path cleared in bulk, the rest
        (checked row by row) as :meth:`write` would, all in input order."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from leadsync.columnar import Cells, csv_lines, csv_text

        chunk = checked.chunk
        n = len(chunk)
        blank = checked.columns.blank  # skipped_blank rows the fast path found
        outcome = np.where(blank, 1, 0).astype(np.int8)  # 0 valid, 1 blank, 2 invalid
        fields = pc.if_else(pa.array(blank), "", checked.fields.dictionary_decode())
        replaced: list[int] = []
        texts: list[str] = []
        for i, row in checked.slow:
            outcome[i] = 1 if row.blank else (2 if row.problems else 0)
            replaced.append(i)
            texts.append("" if row.blank or row.problems else csv_text(",".join(row.payload)))
        if replaced:
            mask = np.zeros(n, dtype=bool)
            mask[replaced] = True
            fields = pc.replace_with_mask(fields, pa.array(mask), pa.array(texts, pa.string()))
        keep = outcome != 2
        self.counts[Outcome.VALID] += int((outcome == 0).sum())
        self.counts[Outcome.SKIPPED_BLANK] += int((outcome == 1).sum())
        # the user's cells as CSV fields, built once for both CSV reports
        originals = [chunk.display_cells(j).csv_field() for j in range(len(self.headers))]
        if keep.any():
            columns = [
                _numbers_text(chunk.row_numbers),
                Cells(checked.lead_ids).csv_field(),
                pc.take(pa.array(_OUTCOME_OF_CODE), pa.array(outcome)),
                "",
                fields,
                *originals,
            ]
            self._spool.put(csv_lines(columns, None if keep.all() else keep))
        failing = {i: row for i, row in checked.slow if outcome[i] == 2}
        every = self._xlsx is not None and self._xlsx.full
        order = sorted(failing)
        if failing:  # their lines built column by column: a line per problem
            self._invalid_lines(originals, order, [failing[i] for i in order])
        if self._xlsx is not None and (failing or every):
            positions = list(range(n)) if every else self._xlsx.gate.take(order)
            if positions:
                part = chunk if every else chunk.take(positions)
                found = [failing.get(i) for i in positions]
                self._xlsx.write_rows(
                    SheetRows(
                        list(part.row_numbers),
                        [_OUTCOME_OF_CODE[outcome[i]] for i in positions],
                        [f.problems if f is not None else () for f in found],
                        part.columns,
                    )
                )

    def flush(self) -> None:
        self._spool.drain()
        self._failures_fh.flush()
        self._successes_fh.flush()

    def close(self, summary: dict[str, Any]) -> None:
        """Finish every file; ``summary`` is written to summary.json as given."""
        self._spool.drain()
        self._failures_fh.close()
        self._successes_fh.close()
        if self._xlsx is not None:
            self._xlsx.close(summary)
        with open_private(self.paths["summary"]) as fh:
            json.dump(summary, fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")


# Above this many rows report.xlsx is written by a second process: a workbook is pure
# Python (~6 us a cell), and a second core writes it while this one checks rows.
_XLSX_PROCESS_ROWS = 2_000


# pickled batches of rows the report.xlsx process may lag behind by (~250 KB each: 16 MB): the
# checks never wait for the workbook, which is written while they run and finished after
_XLSX_QUEUED = 64


class _XlsxProcess:
    """An :class:`XlsxReport` in a process of its own (``python -c``, so nothing of the
    caller's main module runs again), fed pickled batches of rows through a pipe."""

    def __init__(
        self, path: Path, sheet: SheetSpec, *, full: bool, process: Any | None = None
    ) -> None:
        self.full = full
        self.path = path
        # the rows the process would drop or only count are not pickled at all
        self.gate = Gate(full, sheet.attention_rows)
        self.batch: list[tuple[Any, ...]] = []
        self.process = process or spawn_xlsx_worker()
        assert self.process.stdin is not None
        self.pipe = _Spool(self.process.stdin.write, depth=_XLSX_QUEUED)
        self._send((path, sheet, full))

    def _send(self, item: Any) -> None:
        import pickle

        self.pipe.put([pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)])

    def _fail(self, errors: bytes) -> NoReturn:
        message = errors.decode("utf-8", "replace").strip().splitlines()
        raise OSError(
            f"could not write {self.path.name}: {message[-1] if message else 'writer stopped'}"
        )

    def write(self, *args: Any) -> None:
        if not self.gate.admits(args[2]):
            return
        self.batch.append((args[0], tuple(args[1]), *args[2:]))
        if len(self.batch) >= 500:
            self._send(self.batch)
            self.batch = []

    def write_rows(self, rows: SheetRows) -> None:
        if self.batch:  # the rows given one by one go first: the file's order
            self._send(self.batch)
            self.batch = []
        self._send(rows)

    def close(self, summary: Mapping[str, Any]) -> None:
        if self.batch:
            self._send(self.batch)
        self._send(("close", dict(summary), self.gate.beyond))
        try:
            self.pipe.drain()
        except BrokenPipeError:
            self._fail(_finish(self.process)[1])
        code, errors = _finish(self.process)
        if code != 0:
            self._fail(errors)


def spawn_xlsx_worker() -> Any:
    """Start a report.xlsx process (a ``subprocess.Popen``; it waits for its rows).
    Started before the id scan, its start-up runs while a core is idle."""
    import subprocess
    import sys

    # the child finds this very copy of leadsync, however the caller imported it
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # stderr goes to a file: a pipe nobody reads until the end would stall a child that
    # writes more warnings than the pipe holds
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
    process = subprocess.Popen(
        [sys.executable, "-c", "from leadsync.report import xlsx_worker; xlsx_worker()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=env,
    )
    process.leadsync_errors = errors  # type: ignore[attr-defined]
    return process


def _finish(process: Any) -> tuple[int, bytes]:
    """Let a report.xlsx process end (no more input) and wait for it: its exit code and
    what it wrote to stderr."""
    with contextlib.suppress(OSError):
        process.stdin.close()
    code = process.wait()
    with process.leadsync_errors as errors:  # its stderr, a file: never a full pipe
        errors.seek(0)
        return code, errors.read()


def xlsx_worker() -> None:
    """The body of the report.xlsx process: read pickled rows from stdin, write them."""
    import gc
    import pickle
    import sys

    from leadsync.defaults import GC_THRESHOLD

    gc.set_threshold(*GC_THRESHOLD)  # every cell is a few small objects (see defaults)
    from leadsync.columnar import prepare_pyarrow

    prepare_pyarrow()  # the rows' XML is built with pyarrow: without its pandas probe
    source = sys.stdin.buffer
    try:
        path, sheet, full = pickle.load(source)
    except EOFError:  # started early, then not needed (the report was small)
        return
    report = XlsxReport(path, sheet, full=full)
    while True:
        item = pickle.load(source)
        if isinstance(item, tuple):
            report.gate.beyond += item[2]
            report.close(item[1])
            return
        if isinstance(item, SheetRows):
            report.write_rows(item)
            continue
        for args in item:
            report.write(*args)


def _numbers_text(numbers: Sequence[int]) -> pa.Array:
    """Row numbers as a pyarrow string array (a ``range`` without a Python loop)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(numbers, range):
        values = np.arange(numbers.start, numbers.stop, numbers.step, dtype=np.int64)
    else:
        values = np.asarray(numbers, dtype=np.int64)
    return pa.array(values).cast(pa.string())


def _problem_fields(outcome: str, p: Problem) -> list[str]:
    """A problem's fields of a failures.csv line: outcome, stage, field, code, message."""
    return [outcome, p.stage, neutralise(p.field or ""), p.code, neutralise(p.message)]


def _line_parts(
    row: MappedRow, http_status: int | None, cells: Sequence[Any]
) -> tuple[str, str, list[str]]:
    """The lead id, HTTP status and original cells as a CSV report line holds them."""
    status = "" if http_status is None else str(http_status)
    return neutralise(row.lead_id or ""), status, [neutralise(display_text(c)) for c in cells]


def _nothing() -> None:
    return None


class _Spool:
    """Writes blocks of bytes from a thread, so the disk (or the report.xlsx process)
    works while the next chunk is checked; ``put`` waits only when ``depth`` blocks are
    queued."""

    def __init__(
        self, write: Callable[[Any], Any], *, depth: int = 3, first: Callable[[], Any] = _nothing
    ) -> None:
        self.write, self.first = write, first
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def put(self, blocks: list[Any]) -> None:
        if self.thread is None:
            self.first()  # e.g. what a text layer holds goes first
            self.thread = threading.Thread(target=self._run, daemon=True, name="leadsync-spool")
            self.thread.start()
        self.queue.put(blocks)

    def _run(self) -> None:
        while (blocks := self.queue.get()) is not None:
            if self.error is None:
                try:
                    for block in blocks:
                        self.write(block)
                except BaseException as exc:  # raised in the caller's thread by drain()
                    self.error = exc

    def drain(self) -> None:
        """Wait until every block is written; raise what went wrong, if anything did."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


FLUSH_EVERY = 0.2  # seconds: how far the reports may lag behind the rows that finished


class InOrder:
    """Writes rows to the reports in input order, whatever order they finish in; flushes
    the files and reports progress every few tenths of a second."""

    def __init__(self, writer: ReportWriter, total: int, progress: Any | None) -> None:
        self.writer, self.total, self.progress = writer, total, progress
        self.pending: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.next = 0
        self.lock = threading.Lock()
        self.flushed = time.monotonic()

    def put(self, seq: int, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            self.pending[seq] = (args, kwargs)
            while self.next in self.pending:
                a, k = self.pending.pop(self.next)
                self.writer.write(*a, **k)
                self.next += 1
            if time.monotonic() - self.flushed >= FLUSH_EVERY:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        self.writer.flush()  # a crash leaves the rows finished so far in the reports
        self.flushed = time.monotonic()
        if self.progress is not None:
            self.progress(self.next, self.total, self.writer.counts)
