"""The sync engine: every valid row of a run sent as a PATCH by ``concurrency`` workers,
through one throttle, under the guards, journalled, and reported in input order.

The main thread reads the rows and hands the valid ones to the workers through a bounded
queue (it blocks while the workers are busy: the file is never read far ahead of the
sending). Each worker sends a row, has the guards judge the result before it takes the
next one, and writes the row to the reports (in input order, whatever order rows finish
in). Rows not sent because the run stopped are ``not_attempted``, never lost.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync import defaults
from leadsync.client import LeadClient, check_base_url, redact
from leadsync.config import Config
from leadsync.creating import (
    check_ids_path,
    earlier_lead,
    person_key,
    post_journalled,
    write_ids_copy,
)
from leadsync.errors import AbortError, ExitCode, LeadsyncError
from leadsync.fields import REQUIRED_NAMES, update_part
from leadsync.guards import Facts, guards_for, judge_all
from leadsync.journal import Journal
from leadsync.journal.befores import befores_of
from leadsync.lookups import Lookups, look_up, not_sent
from leadsync.model import FAILURE_OUTCOMES, Code, ColumnPlan, MappedRow, Outcome, Problem
from leadsync.model import SendResult as Result
from leadsync.report import InOrder
from leadsync.run import Progress, Run, RunResult
from leadsync.sender import RowSender
from leadsync.summary import request_figures, sending_figures
from leadsync.throttle import Throttle

_SENDS_FIELDS = frozenset({Outcome.UPDATED, Outcome.CREATED})  # fields_sent is filled in


@dataclass
class _Job:
    seq: int
    row: MappedRow
    cells: tuple[Any, ...]
    sent: dict[str, Any] = field(default_factory=dict)  # what went out (after change detection)

    def __post_init__(self) -> None:
        self.had_id = self.row.lead_id is not None  # else its lead is looked up or created


@dataclass
class SyncOutcome:
    """What the engine adds to the run's summary, and the exit code."""

    exit_code: ExitCode
    summary: dict[str, Any]


class SyncEngine:
    """One sync of one opened :class:`~leadsync.run.Run`."""

    def __init__(
        self,
        run: Run,
        config: Config,
        *,
        base_url: str,
        api_key: str,
        book: Journal | None,
        full: bool,
        stop: threading.Event,
        only: set[str] | None = None,
        only_matches: set[str] | None = None,
        only_people: set[str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.run, self.config, self.book, self.full, self.stop = run, config, book, full, stop
        self.base_url, self.api_key = base_url, api_key
        self.only = only  # --retry-failed: the leads to send; None: all
        self.only_matches = only_matches or set()  # --retry-failed: --match-by values
        self.only_people = only_people or set()  # --retry-failed: creates' person keys
        self.found_ids: dict[int, str] = {}  # row -> the lead an id-less row turned out to be
        self.progress = progress
        # one throttle for the run: the offices check and the lookups count against it too
        self.throttle = Throttle(config)
        self.guards = guards_for(config)
        self.lookups: Lookups | None = None
        self.abort: str | None = None
        self.left_out = 0  # --retry-failed: rows not part of this run
        self.senders: list[RowSender] = []
        self._judging = threading.Lock()
        self._settling = threading.Lock()
        self._pending: dict[int, _Job] = {}  # rows handed to the workers, not yet reported
        self._started: set[int] = set()  # ... of them, those a worker has begun to send
        self._closed = False  # the stop grace ran out: workers still busy are not waited for

    # -- before sending -------------------------------------------------------------

    def new_sender(self) -> RowSender:
        """A sender with its own keep-alive client, sharing the run's throttle."""
        client = LeadClient(self.base_url, self.api_key, self.config)
        sender = RowSender(client, self.throttle, self.config, self.stop)
        self.senders.append(sender)
        return sender

    def in_run(self, row: MappedRow) -> bool:
        """--retry-failed: whether ``row`` is one to send again (always, without it)."""
        if self.only is None:
            return True
        if row.blank:
            return False
        if row.lead_id is not None:
            return str(row.lead_id) in self.only
        if row.match is not None and row.match in self.only_matches:
            return True
        return self.config.create and person_key(row.payload) in self.only_people

    def preflight(self) -> str | None:
        """The run-size guards, the offices check, the lookups, then the other guards'
        word: why nothing may be sent, if so."""
        facts = Facts(self.run.scan.rows, self.count_invalid, self.count_changes, self.last_rows)
        why = None
        for guard in (g for g in self.guards if g.early):
            why = why or guard.before(facts)
        if why is not None:
            return why
        why = self._check_offices()
        if why is None and self.config.match_by is not None:
            self.lookups = look_up(
                self.config.match_by,
                (r for r, _ in self.run.rows() if not (r.blank or r.problems) and self.in_run(r)),
                self.new_sender,
                self.config.concurrency,
                self.stop,
                self.config.create,
            )
            why = self.lookups.abort
            if self.book is not None:
                self.book.record_matches(
                    self.run.run_id,
                    self.config.match_by,
                    {v: f.lead for v, f in self.lookups.by_value.items() if f.lead or f.failed},
                )
        if why is None and not self.stop.is_set():
            for guard in (g for g in self.guards if not g.early):
                why = why or guard.before(facts)
        return why

    def count_invalid(self) -> int:
        """Rows the validator refuses (before any lookup)."""
        return sum(1 for row, _ in self.run.rows() if row.problems)

    @property
    def job(self) -> str:
        """What makes runs "the same job": the job file's name, else the input's path."""
        return self.config.job_name or str(self.run.table.path.resolve())

    def last_rows(self) -> int | None:
        """The rows of this job's last finished run (for --max-shrink)."""
        return self.book.last_rows(self.job, self.run.run_id) if self.book is not None else None

    def _check_offices(self) -> str | None:
        if not self.config.check_offices:
            return None
        sender = self.new_sender()
        try:
            offices = sender.offices()
            self.run.office_ids = frozenset(o for o, _ in offices if isinstance(o, int))
        except AbortError as exc:
            return str(exc)  # a refused key: not one row is sent
        except LeadsyncError as exc:
            self.run.table.notices.append(f"office ids not checked ({exc})")
        finally:
            sender.client.close()
        return None

    def count_changes(self) -> int:
        """The leads this run would change (after the lookups: a --match-by row counts
        against the lead it found; rows that found none, or share one, not at all)."""
        keep = REQUIRED_NAMES if self.config.require_names else ()
        changes = 0
        for row, _ in self.run.rows():
            if row.blank or row.problems or not self.in_run(row):
                continue
            if self.lookups is not None and self.lookups.result(row) is not None:
                continue
            if row.lead_id is None:  # --create: a new lead (unless an earlier run made it)
                known = self.book.creates.lead_of(person_key(row.payload)) if self.book else None
                if known is None:
                    changes += 1
                    continue
                row.lead_id = known
            if (
                self.book is None
                or self.full
                or self.book.diff(str(row.lead_id), update_part(row.payload), keep=keep)
            ):
                changes += 1
        return changes

    # -- sending --------------------------------------------------------------------

    def sync(self) -> SyncOutcome:
        """Preflight, then every row: reported, and the valid ones sent."""
        self.abort = self.preflight()
        if self.abort:
            self.stop.set()
        requests_before = self.throttle.stats.requests  # not counted in the rate achieved
        started = time.perf_counter()
        out = InOrder(self.run.writer, self.run.scan.rows, self.progress)
        jobs: queue.Queue[_Job] = queue.Queue(maxsize=self.config.concurrency * 2)
        fed = threading.Event()
        threads = [
            threading.Thread(target=self._worker, args=(jobs, fed, out), name=f"sender-{i}")
            for i in range(self.config.concurrency)
        ]
        for t in threads:
            t.daemon = True  # one left in a request past the stop grace must not hold the exit
            t.start()
        seq = 0
        for row, cells in self.run.rows():
            if not self.in_run(row):
                self.left_out += 1
                continue
            if row.blank:
                out.put(seq, row, Outcome.SKIPPED_BLANK, cells)
            elif row.problems:
                out.put(seq, row, Outcome.INVALID, cells, problems=row.problems)
            elif self.stop.is_set():
                self._settle(_Job(seq, row, cells), Result(Outcome.NOT_ATTEMPTED), out)
            else:
                self._hand_over(jobs, _Job(seq, row, cells), out)
            seq += 1
        fed.set()
        self._join(threads, out)
        out.flush()
        send_s = time.perf_counter() - started
        return SyncOutcome(self._exit_code(), self._summary(send_s, requests_before))

    def _hand_over(self, jobs: queue.Queue[_Job], job: _Job, out: InOrder) -> None:
        """Queue a row for the workers (waiting while they are busy), unless the run
        stops first: then it was never sent."""
        with self._settling:
            self._pending[job.seq] = job
        while True:
            try:
                jobs.put(job, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    self._settle(job, Result(Outcome.NOT_ATTEMPTED), out)
                    return

    def _join(self, threads: list[threading.Thread], out: InOrder) -> None:
        """Wait for the workers; once the run is stopping, for ``stop_grace`` at most.
        Rows still in a request then are ``unknown`` (the journal has them as sent and
        unanswered, so the next run reads their leads back first); rows handed over and
        not begun were never sent."""
        until: float | None = None
        while any(t.is_alive() for t in threads):
            if self.stop.is_set() and until is None:
                until = time.monotonic() + self.config.stop_grace
            if until is not None and time.monotonic() >= until:
                break
            for t in threads:
                t.join(timeout=0.05)
        with self._settling:
            self._closed = True  # a worker that answers later is not heard: its row is told
            left, started = sorted(self._pending.items()), set(self._started)
        grace = f"{self.config.stop_grace:g}"
        for seq, job in left:
            if seq in started:
                message = (
                    f"the run stopped and this row's request had no answer within {grace} s: "
                    "it may have been applied; the next run reads the lead back before "
                    "sending it again"
                )
                result = Result(Outcome.UNKNOWN, code=Code.STOPPED_IN_FLIGHT, message=message)
            else:  # still queued, or taken by a worker that saw the run end first
                result = Result(Outcome.NOT_ATTEMPTED, code=Code.STOPPED)
            self._settle(job, result, out, force=True)

    def _worker(self, jobs: queue.Queue[_Job], fed: threading.Event, out: InOrder) -> None:
        sender = self.new_sender()
        try:
            while True:
                try:
                    job = jobs.get(timeout=0.05)
                except queue.Empty:
                    if fed.is_set():
                        return
                    continue
                with self._settling:
                    if self._closed:
                        return  # the engine reports this row (never sent)
                    self._started.add(job.seq)
                if self.stop.is_set():
                    result = Result(Outcome.NOT_ATTEMPTED, code=Code.STOPPED)
                else:
                    try:
                        result = self.send_row(job, sender)
                    except Exception as exc:  # a bug must not lose the row
                        if self._closed:
                            return  # the run ended without this worker (its row is told)
                        text = redact(f"{type(exc).__name__}: {exc}", self.api_key)
                        result = Result(Outcome.FAILED, code=Code.INTERNAL, message=text)
                    self._judge(result)
                self._settle(job, result, out)
        finally:
            sender.client.close()

    def _judge(self, result: Result) -> None:
        """Every guard sees the result (each keeps its own count); the first to object
        stops the run, before this worker takes another row."""
        with self._judging:
            why = judge_all(self.guards, result)
            if why and self.abort is None:
                self.abort = why
                self.stop.set()

    def _settle(self, job: _Job, result: Result, out: InOrder, force: bool = False) -> None:
        """Report a row's outcome, once: after the stop grace only the engine reports
        (``force``), a worker's late answer is dropped."""
        with self._settling:
            if self._closed and not force:
                return
            self._pending.pop(job.seq, None)
            self._started.discard(job.seq)
        if result.outcome == Outcome.NOT_ATTEMPTED:
            result.message = result.message or not_sent(self.abort)
        found = not job.had_id and job.row.lead_id is not None
        if found and result.outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED):
            self.found_ids[job.row.row] = str(job.row.lead_id)  # for --write-ids
        sent = job.sent or job.row.payload
        out.put(
            job.seq,
            job.row,
            result.outcome,
            job.cells,
            problems=send_problems(job.row, self.run.plan, result),
            http_status=result.http_status,
            fields_sent=list(sent) if result.outcome in _SENDS_FIELDS else [],
            payload=sent,
        )

    def send_row(self, job: _Job, sender: RowSender) -> Result:
        """One row: take its looked-up lead if it has one, settle earlier ambiguous
        attempts, send what changed (or create the lead), journal it."""
        refused = self.lookups.result(job.row) if self.lookups is not None else None
        if refused is not None:
            return refused
        if job.row.lead_id is None:
            return self.create_row(job, sender)
        return self.update_row(job, sender)

    def create_row(self, job: _Job, sender: RowSender) -> Result:
        """A row with no lead (--create): unless an earlier run made its lead (then it is
        an update of that lead), the lead is posted, journalled before and after."""
        row, journal = job.row, self.book
        job.sent = dict(row.payload)
        if journal is None:
            result = sender.send(None, job.sent)
        else:
            person = person_key(row.payload)
            lead, doubt = earlier_lead(journal, sender, person, self.run.run_id)
            if doubt is not None:
                return doubt
            if lead is not None:
                row.lead_id = lead  # an earlier run created it: this row now updates it
                return self.update_row(job, sender)
            result = post_journalled(journal, sender, self.run.run_id, row.row, person, job.sent)
        row.lead_id = result.lead_id
        return result

    def update_row(self, job: _Job, sender: RowSender) -> Result:
        """A row with a lead: settle earlier ambiguous attempts, send what changed."""
        lead, journal = str(job.row.lead_id), self.book
        payload = update_part(job.row.payload)
        if journal is None:
            job.sent = dict(payload)
            return sender.send(lead, job.sent)
        run_id = self.run.run_id
        pairs = {tuple(p) for p in payload.get("questionnaire", [])}
        for earlier in journal.pending(lead, run_id):
            # An earlier run sent this lead something and never heard back (a crash, a
            # timeout): read the lead before sending again, so nothing is applied twice.
            if self.config.resend_ambiguous:
                break
            applied = sender.check_applied(lead, earlier.payload)
            if applied is not None:
                journal.resolve(earlier, lead, run_id, applied)
            elif pairs & {tuple(p) for p in earlier.payload.get("questionnaire", [])}:
                return Result(
                    Outcome.UNKNOWN,
                    code=Code.AMBIGUOUS_EARLIER,
                    message=f"run {earlier.run_id} sent this lead's questionnaire answers "
                    "without learning whether they were applied, and reading the lead back "
                    "could not tell; check the lead, or re-run with --resend-ambiguous",
                )
            # else: plain field values, harmless to send again
        keep = REQUIRED_NAMES if self.config.require_names else ()
        job.sent = dict(payload) if self.full else journal.diff(lead, payload, keep=keep)
        if not job.sent:
            return Result(
                Outcome.UNCHANGED,
                code=Code.UNCHANGED,
                message="every field already confirmed by an earlier run",
            )
        befores = self.befores(lead, job.sent, sender)
        attempt = journal.begin(run_id, job.row.row, lead, job.sent, befores)
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

    def befores(
        self, lead: str, sent: dict[str, Any], sender: RowSender
    ) -> dict[str, tuple[str, Any]]:
        """What each field of ``sent`` held before (for ``leadsync revert``): a read of
        the lead with ``--snapshot`` (one more request, throttled like the rest), else
        the journal's last confirmed value."""
        assert self.book is not None
        read = sender.read_lead(lead).lead if self.config.snapshot else None
        return befores_of(sent, read, self.book.known(lead)[0])

    def live(self) -> dict[str, int]:
        """Figures so far, for a progress display: requests, retries, 429s."""
        return request_figures(self.throttle, self.senders)

    # -- the end --------------------------------------------------------------------

    def _exit_code(self) -> ExitCode:
        if self.abort or self.stop.is_set():
            return ExitCode.ABORTED
        counts = self.run.writer.counts
        return ExitCode.ROWS_FAILED if any(counts[o] for o in FAILURE_OUTCOMES) else ExitCode.OK

    def _summary(self, send_s: float, requests_before: int) -> dict[str, Any]:
        aborted = self.abort or (
            "stopped before the end (interrupted)" if self.stop.is_set() else None
        )
        sending = sending_figures(
            self.config, self.base_url, self.throttle, self.senders, send_s, requests_before
        )
        sending["change_detection"] = self.book is not None and not self.full
        if self.lookups is not None:
            sending["lookups"] = len(self.lookups.by_value)
        summary: dict[str, Any] = {"aborted": aborted, "sending": sending}
        if self.only is not None:
            summary["rows_left_out"] = self.left_out
        return summary


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
    write_ids: str | Path | None = None,
    watch: Callable[[SyncEngine], None] | None = None,
) -> RunResult:
    """Validate every row of ``path`` and send each valid one as a PATCH; report all.

    With a ``journal`` (a SQLite file; the CLI always uses one) only what changed since
    the last confirmed update is sent (``full=True`` sends everything), a crashed run
    resumes where it stopped, and ``retry_failed=RUN`` sends only the rows that failed
    or ended unknown in that run. ``stop`` ends the run early (Ctrl-C, SIGTERM): rows
    in flight finish, the rest are reported ``not_attempted``, the exit code is 3.

    With ``config.create`` rows without a lead are created (``POST /leads``); then
    ``write_ids`` writes a copy of the input with the id of every lead such a row turned
    out to be (created now, by an earlier run, or found by ``--match-by``). ``watch``
    is handed the engine before it starts (a progress display reads
    :meth:`SyncEngine.live` from it).
    """
    config = config or Config()
    base_url = check_base_url(config.base_url)
    if not api_key:
        raise LeadsyncError(f"no API key: set {defaults.ENV_API_KEY} or pass --api-key-file PATH")
    ids_to = check_ids_path(write_ids, path) if write_ids is not None else None
    book = Journal(journal) if journal is not None else None
    if book is not None:
        book.acquire()
    try:
        only = None
        only_matches: set[str] = set()
        only_people: set[str] = set()
        retry_of = None
        if retry_failed is not None:
            if book is None:
                raise LeadsyncError("--retry-failed needs the journal of the run to retry")
            retry_of = book.find_run(retry_failed)["run_id"]
            only = book.leads_to_retry(retry_of)
            if config.match_by is not None:
                only_matches = book.matches_to_retry(retry_of, config.match_by)
            if config.create:
                only_people = book.creates.to_retry(retry_of)
        run = Run.open(path, config, report_dir, xlsx_report)
        if book is not None:
            book.start_run(
                run.run_id,
                "sync",
                str(run.table.path),
                run.sha256,
                str(run.writer.directory),
                job=config.job_name or str(run.table.path.resolve()),
                rows=run.scan.rows,
            )
        engine = SyncEngine(
            run,
            config,
            base_url=base_url,
            api_key=api_key,
            book=book,
            full=full,
            stop=stop or threading.Event(),
            only=only,
            only_matches=only_matches,
            only_people=only_people,
            progress=progress,
        )
        if watch is not None:
            watch(engine)
        result = engine.sync()
        extra = result.summary
        if ids_to is not None:
            extra["ids_written"] = write_ids_copy(run, engine.found_ids, ids_to)
        if retry_of is not None:
            extra["retry_of"] = retry_of
        if book is not None:
            extra["journal"] = str(book.path)
            book.finish_run(
                run.run_id, int(result.exit_code), run.writer.counts, extra.get("aborted")
            )
            if config.keep_runs is not None:
                from leadsync.retention import prune

                extra["pruned"] = prune(book, config.keep_runs)
        return run.finish("sync", result.exit_code, extra)
    finally:
        if book is not None:
            book.close()


def send_problems(row: MappedRow, plan: ColumnPlan, result: Result) -> list[Problem]:
    """The report lines for a row the server refused or that could not be sent."""
    if result.outcome in _SENDS_FIELDS:
        return []
    if result.outcome == Outcome.NOT_ATTEMPTED:
        return [Problem(row.row, Code.NOT_ATTEMPTED, result.message, stage="send")]
    problems = []
    for key, messages in result.field_errors.items():
        fname = key.split(".")[0]
        index = row.sources.get(fname, plan.field_column(fname))
        column = plan.headers[index] if index is not None else None
        for message in messages:
            problems.append(
                Problem(row.row, result.code, message, fname, column, index, stage="send")
            )
    if not problems:
        problems.append(
            Problem(row.row, result.code or result.outcome, result.message, stage="send")
        )
    return problems
