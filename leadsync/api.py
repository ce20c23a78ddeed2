"""The library API: what the CLI calls, usable on its own.

>>> result = leadsync.validate("export.xlsx")          # doctest: +SKIP
>>> result.exit_code, result.summary["outcomes"]["invalid"]   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import queue
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync import __version__, defaults
from leadsync.config import Config
from leadsync.errors import AbortError, ExitCode, LeadsyncError
from leadsync.fields import REQUIRED_NAMES
from leadsync.journal import Journal, diff_payload
from leadsync.mapper import (
    ColumnPlan,
    MappedRow,
    Problem,
    fast_path_applies,
    fields_sent,
    lead_id_texts,
    map_chunk,
    map_columns,
    payload_json,
    plan_table,
)
from leadsync.reader import Table, in_thread, open_table, prefetch
from leadsync.report import (
    FAILURE_OUTCOMES,
    OUTCOMES,
    CheckedChunk,
    ReportWriter,
    spawn_xlsx_worker,
)
from leadsync.sender import (
    LeadClient,
    Lookup,
    RowSender,
    SendResult,
    Throttle,
    check_base_url,
    redact,
    refused_key,
)
from leadsync.validator import IdScan, check_columns, scan_ids, validate_rows

Progress = Callable[[int, int, Counter[str]], None]  # rows done, rows in all, counts so far


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


# From this size a file surely has enough rows to need a report.xlsx process (~200k rows
# of a typical export): it is started before the id scan.
_EARLY_XLSX_BYTES = 32 << 20


@dataclass
class _Run:
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

    @property
    def sha256(self) -> str:
        return self.digest.result()

    @classmethod
    def open(
        cls, path: str | Path, config: Config, report_dir: str | Path | None, xlsx_report: bool
    ) -> _Run:
        started, clock, run_id = dt.datetime.now(dt.UTC), time.perf_counter(), new_run_id()
        table = open_table(path, config.sheet)
        digest = in_thread(file_sha256, table.path, name="leadsync-digest")
        plan = plan_table(table, config)
        early = None
        if xlsx_report and table.path.stat().st_size >= _EARLY_XLSX_BYTES:
            early = spawn_xlsx_worker()  # its start-up overlaps the id scan
        try:
            scan = scan_ids(table, plan, config.chunk_rows)
            if scan.rows == 0:
                table.notices.append(f"{table.path.name} has a header but no data rows")
            directory = Path(report_dir) if report_dir else Path(defaults.REPORT_ROOT) / run_id
            writer = ReportWriter(
                directory,
                table,
                xlsx=xlsx_report,
                total_rows=scan.rows,
                xlsx_full_rows=config.xlsx_full_rows,
                xlsx_attention_rows=config.xlsx_attention_rows,
                xlsx_process=early,
            )
        except BaseException:
            if early is not None:
                early.kill()
                early.wait()
            raise
        return cls(config, run_id, started, clock, table, plan, scan, writer, digest)

    def rows(self, fast: bool = True) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
        """Every row, mapped and validated, with its original cells, chunk by chunk."""
        return _validated_rows(
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


def _validated_rows(
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
        for checked in _checked_chunks(table, plan, config, scan, office_ids):
            yield from _rows_of(checked, plan)
        return
    seen: set[Any] = set()
    report_row = plan.report_row_index
    for chunk in table.chunks(config.chunk_rows, fast=fast):
        rows = map_chunk(chunk, plan, config)
        validate_rows(rows, plan, config, scan.duplicates, office_ids)
        for row, cells in zip(rows, chunk.rows(), strict=True):
            if report_row is not None:
                if cells[report_row] in seen:
                    continue
                seen.add(cells[report_row])
            yield row, cells


def _rows_of(
    checked: CheckedChunk, plan: ColumnPlan
) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
    """A checked chunk's rows as :class:`MappedRow` objects, in order."""
    import json

    chunk = checked.chunk
    slow = dict(checked.slow)
    payloads = payload_json(checked.columns, plan).to_pylist()
    leads = checked.lead_ids.to_pylist()
    for i, cells in enumerate(chunk.rows()):
        row = slow.get(i)
        if row is None:
            number = chunk.row_numbers[i]
            if checked.columns.blank[i]:
                row = MappedRow(row=number, lead_id=leads[i] or None, payload={}, blank=True)
            else:
                row = MappedRow(row=number, lead_id=leads[i], payload=json.loads(payloads[i]))
        yield row, cells


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
    table = open_table(path, config.sheet)
    plan = plan_table(table, config)
    scan = scan_ids(table, plan, config.chunk_rows)
    for row, _ in _validated_rows(table, plan, config, scan, fast=fast):
        yield row


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
) -> RunResult:
    """Read, map and validate every row of ``path``; write the reports; send nothing.

    Raises :class:`~leadsync.errors.LeadsyncError` when the file as a whole cannot be
    used (missing, unreadable, no id column); row problems are reported, not raised.
    ``fast=False`` maps and checks every row one by one (the reference the columnar
    fast path is tested against; same verdicts, same reports, slower).
    """
    config = config or Config()
    run = _Run.open(path, config, report_dir, xlsx_report)
    if office_ids is not None:
        run.office_ids = frozenset(office_ids)
    writer = run.writer
    if fast and fast_path_applies(run.plan, config):
        checked_chunks = _checked_chunks(run.table, run.plan, config, run.scan, run.office_ids)
        # reports for chunk k are written (mostly outside the GIL) while chunk k+1 is checked
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadsync-report") as pool:
            pending: deque[tuple[Future[None], int]] = deque()
            done = 0
            for checked in checked_chunks:
                pending.append((pool.submit(writer.write_chunk, checked), len(checked.chunk)))
                while len(pending) > 1:
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
                writer.write(row, "skipped_blank", cells)
            elif row.problems:
                writer.write(row, "invalid", cells, problems=row.problems)
            else:
                writer.write(row, "valid", cells, payload=row.payload)
            if progress is not None and done % 1000 == 0:
                progress(done, run.scan.rows, writer.counts)
    exit_code = ExitCode.ROWS_FAILED if writer.counts["invalid"] else ExitCode.OK
    return run.finish(command, exit_code)


def _checked_chunks(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None,
) -> Iterator[CheckedChunk]:
    """Every chunk through the columnar fast path; the rows it cannot clear are mapped
    and validated row by row (they carry the problems)."""
    import numpy as np

    duplicates = scan.duplicates
    assert plan.id_index is not None  # the fast path needs an id column
    for chunk in prefetch(table.chunks(config.chunk_rows)):
        columns = map_columns(chunk, plan, config)
        cleared = check_columns(columns, plan, config, duplicates, office_ids)
        positions = np.flatnonzero(~(cleared | columns.blank)).tolist()
        slow: list[tuple[int, MappedRow]] = []
        if positions:
            rows = map_chunk(chunk.take(positions), plan, config)
            validate_rows(rows, plan, config, duplicates, office_ids)
            slow = list(zip(positions, rows, strict=True))
        lead_ids = lead_id_texts(chunk.display_cells(plan.id_index))
        fields = fields_sent(columns, plan)
        yield CheckedChunk(chunk, columns, lead_ids, fields, slow)


@dataclass
class _Job:
    seq: int
    row: MappedRow
    cells: tuple[Any, ...]
    sent: dict[str, Any] = field(default_factory=dict)  # what went out (after change detection)


class _InOrder:
    """Writes rows to the reports in input order, whatever order they finish in."""

    def __init__(self, writer: ReportWriter) -> None:
        self.writer = writer
        self.pending: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.next = 0

    def put(self, seq: int, *args: Any, **kwargs: Any) -> None:
        self.pending[seq] = (args, kwargs)
        while self.next in self.pending:
            a, k = self.pending.pop(self.next)
            self.writer.write(*a, **k)
            self.next += 1


class _Lookups:
    """--match-by: every looked-up row's lead, found before anything is sent, so that
    one lead on two rows (two lookups, or a lookup and an id) stops both rows: its
    questionnaire answers would be appended twice."""

    def __init__(self, by: str) -> None:
        self.by = by
        self.by_value: dict[str, Lookup] = {}  # value -> what its lookup found
        self.rows_of: dict[str, list[int]] = {}  # lead -> the rows that update it
        self.abort: str | None = None  # the API refused the key while looking up

    def result(self, row: MappedRow) -> SendResult | None:
        """Why ``row`` must not be sent (None: it may); sets a looked-up row's lead id."""
        found = self.by_value.get(row.match or "") if row.lead_id is None else None
        looked_up = found is not None
        if found is not None:
            lead, why, failed = found
            if lead is None and failed:  # the API could not be asked: worth a retry
                return SendResult("failed", code="lookup_failed", message=why)
            if lead is None:
                return SendResult("invalid", code="no_single_match", message=why)
            row.lead_id = lead
        if row.lead_id is None:  # not looked up: the run stopped first
            return SendResult("not_attempted", code="stopped", message=_not_sent(None))
        lead = str(row.lead_id)
        others = [r for r in self.rows_of.get(lead, ()) if r != row.row]
        if not others:
            return None
        many = len(others) > 1
        listed = f"row{'s' if many else ''} " + ", ".join(map(str, others[:5]))
        listed += " ..." if len(others) > 5 else ""
        if looked_up:
            what = f"{self.by} {row.match!r} finds lead {lead}, which {listed} also "
            what += "update" if many else "updates"
        else:
            what = f"{listed} also update{'' if many else 's'} lead {lead} (found by {self.by})"
        return SendResult(
            "invalid",
            code="id_duplicate",
            message=f"{what}: one lead on two rows would get its questionnaire twice; keep one row",
        )


def _look_up(ctx: _SyncContext, stop: threading.Event) -> _Lookups:
    """Find the lead of every valid row that has a --match-by value and no id, with
    ``concurrency`` lookups in flight, before any row is sent."""
    config, run = ctx.config, ctx.run
    assert config.match_by is not None
    lookups = _Lookups(config.match_by)
    wanted: dict[str, list[int]] = {}  # value -> rows (one lookup per distinct value)
    named: dict[str, int] = {}  # lead id given outright -> its row
    for row, _ in run.rows():
        if row.blank or row.problems or not ctx.in_run(row):
            continue
        if row.lead_id is not None:
            named[str(row.lead_id)] = row.row
        elif row.match:
            wanted.setdefault(row.match, []).append(row.row)
    todo: queue.Queue[str | None] = queue.Queue()
    for value in wanted:
        todo.put(value)

    def worker() -> None:
        client = LeadClient(ctx.base_url, ctx.api_key, config)
        sender = RowSender(client, ctx.throttle, config, stop)
        try:
            while (value := todo.get()) is not None:
                result = sender.find_lead(config.match_by or "", value)
                lookups.by_value[value] = result  # dict writes are atomic
        except AbortError as exc:  # a refused key: nothing is sent
            lookups.abort = lookups.abort or str(exc)
            stop.set()
        finally:
            client.close()

    threads = [
        threading.Thread(target=worker, name=f"lookup-{i}", daemon=True)
        for i in range(min(config.concurrency, len(wanted)))
    ]
    for t in threads:
        todo.put(None)
        t.start()
    for t in threads:
        t.join()
    for lead, number in named.items():
        lookups.rows_of.setdefault(lead, []).append(number)
    for value, numbers in wanted.items():
        found = lookups.by_value.get(value)
        if found is not None and found.lead is not None:
            lookups.rows_of.setdefault(found.lead, []).extend(numbers)
    lookups.rows_of = {k: sorted(v) for k, v in lookups.rows_of.items() if len(v) > 1}
    return lookups


def _send_row(
    job: _Job,
    sender: RowSender,
    journal: Journal | None,
    run_id: str,
    config: Config,
    full: bool,
    lookups: _Lookups | None = None,
) -> SendResult:
    """One row: take its looked-up lead if it has one, settle earlier ambiguous attempts,
    send what changed, journal it."""
    refused = lookups.result(job.row) if lookups is not None else None
    if refused is not None:
        return refused
    lead, payload = str(job.row.lead_id), job.row.payload
    if journal is None:
        job.sent = dict(payload)
        return sender.send(lead, job.sent)
    pairs = {tuple(p) for p in payload.get("questionnaire", [])}
    for earlier in journal.pending(lead, run_id):
        # An earlier run sent this lead something and never heard back (a crash, a
        # timeout): read the lead before sending again, so nothing is applied twice.
        if config.resend_ambiguous:
            break
        applied = sender.check_applied(lead, earlier.payload)
        if applied is not None:
            journal.resolve(earlier, lead, run_id, applied)
        elif pairs & {tuple(p) for p in earlier.payload.get("questionnaire", [])}:
            return SendResult(
                "unknown",
                code="ambiguous_earlier",
                message=f"run {earlier.run_id} sent this lead's questionnaire answers without "
                "learning whether they were applied, and reading the lead back could not "
                "tell; check the lead, or re-run with --resend-ambiguous",
            )
        # else: plain field values, harmless to send again
    keep = REQUIRED_NAMES if config.require_names else ()
    job.sent = dict(payload) if full else journal.diff(lead, payload, keep=keep)
    if not job.sent:
        return SendResult(
            "unchanged", code="unchanged", message="every field already confirmed by an earlier run"
        )
    attempt = journal.begin(run_id, job.row.row, lead, job.sent)
    result = sender.send(lead, job.sent)
    journal.finish(
        attempt,
        lead,
        run_id,
        result.outcome,
        job.sent,
        result.http_status,
        result.code,
        result.message,
    )
    return result


def sync(
    path: str | Path,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    api_key: str,
    journal: str | Path | None = None,
    full: bool = False,
    retry_failed: str | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    xlsx_report: bool = True,
) -> RunResult:
    """Validate every row of ``path`` and send each valid one as a PATCH; report all.

    With a ``journal`` (a SQLite file; the CLI always uses one) only what changed since
    the last confirmed update is sent (``full=True`` sends everything), a crashed run
    resumes where it stopped, and ``retry_failed=RUN`` sends only the rows that failed
    or ended unknown in that run. ``stop`` ends the run early (Ctrl-C, SIGTERM): rows
    in flight finish, the rest are reported ``not_attempted``, the exit code is 3.
    """
    config = config or Config()
    base_url = check_base_url(config.base_url)
    if not api_key:
        raise LeadsyncError(f"no API key: set {defaults.ENV_API_KEY} or pass --api-key-file PATH")
    book = Journal(journal) if journal is not None else None
    if book is not None:
        book.acquire()
    try:
        only = None
        only_matches: set[str] = set()
        retry_of = None
        if retry_failed is not None:
            if book is None:
                raise LeadsyncError("--retry-failed needs the journal of the run to retry")
            retry_of = book.find_run(retry_failed)["run_id"]
            only = book.leads_to_retry(retry_of)
            if config.match_by is not None:
                only_matches = book.matches_to_retry(retry_of, config.match_by)
        run = _Run.open(path, config, report_dir, xlsx_report)
        if book is not None:
            book.start_run(
                run.run_id, "sync", str(run.table.path), run.sha256, str(run.writer.directory)
            )
        # one throttle for the run: the preflight's request counts against the budget too
        ctx = _SyncContext(
            run, config, base_url, api_key, book, full, only, Throttle(config), only_matches
        )
        stop = stop or threading.Event()
        preflight = _check_offices(ctx)
        if config.match_by is not None and preflight is None:
            ctx.lookups = _look_up(ctx, stop)
            preflight = ctx.lookups.abort
            if book is not None:
                book.record_matches(
                    run.run_id,
                    config.match_by,
                    {v: f.lead for v, f in ctx.lookups.by_value.items() if f.lead or f.failed},
                )
        if preflight is None and not stop.is_set():
            preflight = _too_many_changes(ctx)
        result = _sync_rows(ctx, stop, progress, preflight)
        extra = result.summary
        if retry_of is not None:
            extra["retry_of"] = retry_of
        if book is not None:
            extra["journal"] = str(book.path)
            book.finish_run(
                run.run_id, int(result.exit_code), run.writer.counts, extra.get("aborted")
            )
        return run.finish("sync", result.exit_code, extra)
    finally:
        if book is not None:
            book.close()


@dataclass
class _SyncContext:
    """What the stages of one sync share."""

    run: _Run
    config: Config
    base_url: str
    api_key: str
    book: Journal | None
    full: bool
    only: set[str] | None  # --retry-failed: the leads to send; None: all
    throttle: Throttle
    only_matches: set[str] = field(default_factory=set)  # --retry-failed: --match-by values
    lookups: _Lookups | None = None  # --match-by: each looked-up row's lead

    def in_run(self, row: MappedRow) -> bool:
        """--retry-failed: whether ``row`` is one to send again (always, without it)."""
        if self.only is None:
            return True
        if row.blank:
            return False
        if row.lead_id is not None:
            return str(row.lead_id) in self.only
        return row.match is not None and row.match in self.only_matches


def _check_offices(ctx: _SyncContext) -> str | None:
    """Fetch the account's offices before anything is sent; returns why the run must not
    send (a refused key), if it must not."""
    run, config = ctx.run, ctx.config
    if config.check_offices:
        client = LeadClient(ctx.base_url, ctx.api_key, config)
        try:
            offices = client.offices(ctx.throttle)
            run.office_ids = frozenset(o for o, _ in offices if isinstance(o, int))
        except AbortError as exc:
            return str(exc)  # a refused key: not one row is sent
        except LeadsyncError as exc:
            run.table.notices.append(f"office ids not checked ({exc})")
        finally:
            client.close()
    return None


def _too_many_changes(ctx: _SyncContext) -> str | None:
    """--max-changes: why the run must not send, if the file would change too many leads
    (after the lookups, so a --match-by row counts against the lead it found)."""
    run, config, book, full = ctx.run, ctx.config, ctx.book, ctx.full
    if config.max_changes is None:
        return None
    keep = REQUIRED_NAMES if config.require_names else ()
    changes = 0
    for row, _ in run.rows():
        if row.blank or row.problems or not ctx.in_run(row):
            continue
        if ctx.lookups is not None and ctx.lookups.result(row) is not None:
            continue  # not to be sent: no single lead found, or one lead on two rows
        if book is None or full or book.diff(str(row.lead_id), row.payload, keep=keep):
            changes += 1
    if changes > config.max_changes:
        return (
            f"--max-changes {config.max_changes}: this file would change {changes} "
            "leads; nothing was sent (raise the limit if that is expected)"
        )
    return None


@dataclass
class _SyncOutcome:
    exit_code: ExitCode
    summary: dict[str, Any]


def _sync_rows(
    ctx: _SyncContext,
    stop: threading.Event | None,
    progress: Progress | None,
    preflight: str | None = None,
) -> _SyncOutcome:
    run, config, book, full, only = ctx.run, ctx.config, ctx.book, ctx.full, ctx.only
    base_url, api_key, throttle = ctx.base_url, ctx.api_key, ctx.throttle
    stop = stop or threading.Event()
    jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=config.concurrency * 2)
    results: queue.Queue[tuple[_Job, SendResult]] = queue.Queue()
    senders: list[RowSender] = []
    judging = threading.Lock()
    out = _InOrder(run.writer)
    state: dict[str, Any] = {
        "abort": preflight,
        "failed_in_a_row": 0,
        "left_out": 0,
        "sent": 0,
        "failures": 0,
    }
    if preflight:
        stop.set()
    send_started = time.perf_counter()
    requests_before = throttle.stats.requests  # the offices check and any lookups

    def worker() -> None:
        client = LeadClient(base_url, api_key, config)
        sender = RowSender(client, throttle, config, stop)
        senders.append(sender)
        try:
            while (job := jobs.get()) is not None:
                if stop.is_set():
                    result = SendResult("not_attempted", code="stopped")
                else:
                    try:
                        result = _send_row(job, sender, book, run.run_id, config, full, ctx.lookups)
                    except Exception as exc:  # a bug must not lose the row
                        result = SendResult(
                            "failed",
                            code="internal",
                            message=redact(f"{type(exc).__name__}: {exc}", api_key),
                        )
                    # judged here, before this worker takes another row: a guard that trips
                    # stops the next send, however late the main thread drains the results
                    with judging:
                        judge(result)
                results.put((job, result))
        finally:
            client.close()

    def judge(result: SendResult) -> None:
        """Counts a sent row towards the breaker and the failure-rate guard."""
        if result.abort and state["abort"] is None:
            state["abort"] = result.abort
            stop.set()
        if result.outcome == "failed" and result.code != "auth":
            state["failed_in_a_row"] += 1
            if state["failed_in_a_row"] >= config.breaker_threshold and state["abort"] is None:
                state["abort"] = (
                    f"circuit breaker: {state['failed_in_a_row']} rows in a row "
                    f"failed (last: {result.message})"
                )
                stop.set()
        elif result.outcome in ("updated", "rejected", "unknown"):
            state["failed_in_a_row"] = 0
        if result.outcome in ("updated", "rejected", "failed", "unknown"):
            state["sent"] += 1
            state["failures"] += result.outcome != "updated"
            share = state["failures"] / state["sent"]
            limit = config.max_failure_rate
            if (
                limit is not None
                and state["sent"] >= _MIN_SAMPLE
                and share > limit
                and state["abort"] is None
            ):
                state["abort"] = (
                    f"--max-failure-rate {limit:g}: {state['failures']} of the "
                    f"first {state['sent']} rows sent failed"
                )
                stop.set()

    def settle(job: _Job, result: SendResult) -> None:
        if result.outcome == "not_attempted":
            result.message = result.message or _not_sent(state["abort"])
        sent = job.sent or job.row.payload
        out.put(
            job.seq,
            job.row,
            result.outcome,
            job.cells,
            problems=_send_problems(job.row, run.plan, result),
            http_status=result.http_status,
            fields_sent=list(sent) if result.outcome == "updated" else [],
            payload=sent,
        )

    def drain(block: float = 0.0) -> None:
        try:
            item = results.get(timeout=block) if block else results.get_nowait()
            settle(*item)
            while True:
                settle(*results.get_nowait())
        except queue.Empty:
            pass
        run.writer.flush()  # a crash leaves the rows finished so far in the reports
        if progress is not None:
            progress(out.next, run.scan.rows, run.writer.counts)

    threads = [
        threading.Thread(target=worker, name=f"sender-{i}", daemon=True)
        for i in range(config.concurrency)
    ]
    for t in threads:
        t.start()
    seq = 0
    for row, cells in run.rows():
        if not ctx.in_run(row):
            state["left_out"] += 1  # --retry-failed: not part of this run
            continue
        if row.blank:
            out.put(seq, row, "skipped_blank", cells)
        elif row.problems:
            out.put(seq, row, "invalid", cells, problems=row.problems)
        elif stop.is_set():
            out.put(
                seq, row, "not_attempted", cells, problems=[_not_attempted(row, state["abort"])]
            )
        else:
            job = _Job(seq, row, cells)
            while True:
                try:
                    jobs.put(job, timeout=0.05)
                    break
                except queue.Full:
                    drain()
        seq += 1
        if seq % 64 == 0:
            drain()
    for _ in threads:
        while True:
            try:
                jobs.put(None, timeout=0.05)
                break
            except queue.Full:
                drain()
    while any(t.is_alive() for t in threads):
        drain(0.05)
    drain()
    send_s = time.perf_counter() - send_started
    counts = run.writer.counts
    aborted = state["abort"] or ("stopped before the end (interrupted)" if stop.is_set() else None)
    if aborted:
        exit_code = ExitCode.ABORTED
    elif any(counts[o] for o in FAILURE_OUTCOMES):
        exit_code = ExitCode.ROWS_FAILED
    else:
        exit_code = ExitCode.OK
    stats = throttle.stats
    summary: dict[str, Any] = {
        "aborted": aborted,
        "sending": {
            "base_url": base_url,
            "mode": f"pinned {config.rate:g}/s"
            if config.rate
            else f"adaptive (max {config.max_rate:g}/s)",
            "concurrency": config.concurrency,
            "change_detection": book is not None and not full,
            "requests": stats.requests,
            "retries": sum(s.retries for s in senders),
            "rate_limited_429": stats.rate_limited,
            "waited_for_retry_after": stats.waits_for_retry_after,
            "duration_s": round(send_s, 3),
            # over the sending alone: the checks and lookups before it had their own time
            "achieved_rate": (
                round((stats.requests - requests_before) / send_s, 2) if send_s > 0 else None
            ),
        },
    }
    if ctx.lookups is not None:
        summary["sending"]["lookups"] = len(ctx.lookups.by_value)
    if only is not None:
        summary["rows_left_out"] = state["left_out"]
    return _SyncOutcome(exit_code, summary)


_MIN_SAMPLE = 10  # rows sent before --max-failure-rate may judge the run


def _not_sent(reason: str | None) -> str:
    return f"not sent: {reason}" if reason else "not sent: the run was stopped"


def _not_attempted(row: MappedRow, reason: str | None) -> Problem:
    return Problem(row=row.row, code="not_attempted", message=_not_sent(reason), stage="send")


def _send_problems(row: MappedRow, plan: ColumnPlan, result: SendResult) -> list[Problem]:
    """The report lines for a row the server refused or that could not be sent."""
    if result.outcome in ("updated",):
        return []
    if result.outcome == "not_attempted":
        return [Problem(row=row.row, code="not_attempted", message=result.message, stage="send")]
    problems = []
    for key, messages in result.field_errors.items():
        fname = key.split(".")[0]
        index = row.sources.get(fname, plan.field_column(fname))
        for message in messages:
            problems.append(
                Problem(
                    row=row.row,
                    code=result.code,
                    message=message,
                    stage="send",
                    field=fname,
                    column=plan.headers[index] if index is not None else None,
                    column_index=index,
                )
            )
    if not problems:
        problems.append(
            Problem(
                row=row.row,
                code=result.code or result.outcome,
                message=result.message,
                stage="send",
            )
        )
    return problems


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
    sha256: str | None = None,
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
            "sha256": sha256 or file_sha256(table.path),
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


@dataclass(frozen=True)
class Change:
    """One field a sync would change: the old value (as far as known) and the new one."""

    row: int
    lead_id: str
    field: str
    old: Any
    new: Any


_UNKNOWN = "(not known)"


def plan(
    path: str | Path,
    config: Config | None = None,
    *,
    journal: str | Path | None = None,
    api_key: str | None = None,
    live: bool = False,
    left_out: list[int] | None = None,
) -> Iterator[Change]:
    """What a sync of ``path`` would change, field by field, sending nothing.

    The old values come from the journal's last confirmed state, or with ``live`` from
    ``GET /leads/<id>`` (throttled like a sync). Invalid rows are left out (a sync would
    not send them): their row numbers are appended to ``left_out`` as they are met.
    """
    config = config or Config()
    table = open_table(path, config.sheet)
    col_plan = plan_table(table, config)
    scan = scan_ids(table, col_plan, config.chunk_rows)
    book = Journal(journal) if journal is not None and Path(journal).exists() else None
    client = reader = None
    if live:
        if not api_key:
            raise LeadsyncError(f"--live needs the API key: set {defaults.ENV_API_KEY}")
        client = LeadClient(config.base_url, api_key, config)
        reader = RowSender(client, Throttle(config), config, threading.Event())
    try:
        for row, _ in _validated_rows(table, col_plan, config, scan):
            if row.blank:
                continue
            if row.problems or row.lead_id is None:
                if left_out is not None:
                    left_out.append(row.row)
                continue
            lead = row.lead_id
            if reader is not None:
                known = _live_lead(reader, lead)
                fields = {k: v for k, v in known.items() if k != "questionnaire"}
                fields.update({f"meta.{k}": v for k, v in (known.get("meta") or {}).items()})
                pairs = {tuple(p) for p in known.get("questionnaire") or [] if isinstance(p, list)}
                diff = diff_payload(row.payload, fields, pairs)
            elif book is not None:
                diff = book.diff(lead, row.payload)
                fields = book.known(lead)[0]
            else:
                diff, fields = dict(row.payload), {}
            yield from _changes(row.row, lead, diff, fields)
    finally:
        if client is not None:
            client.close()
        if book is not None:
            book.close()


def _live_lead(reader: RowSender, lead: str) -> dict[str, Any]:
    """plan --live: the lead as it is now ({} when the API does not have it)."""
    found = reader.read_lead(lead)
    if found.status in (401, 403):
        raise AbortError(refused_key(found.status))
    if found.status is None:
        raise LeadsyncError(
            f"--live: reading lead {lead} failed ({found.failure}): check the base URL "
            "and the network"
        )
    return found.lead or {}


def _changes(row: int, lead: str, diff: dict[str, Any], fields: dict[str, Any]) -> Iterator[Change]:
    for key, value in diff.items():
        if key == "questionnaire":
            for q, a in value:
                yield Change(row, lead, f"questionnaire: {q}", "(appended)", a)
        elif key == "meta":
            for k, v in value.items():
                yield Change(row, lead, f"meta: {k}", fields.get(f"meta.{k}", _UNKNOWN), v)
        else:
            yield Change(row, lead, key, fields.get(key, _UNKNOWN), value)
