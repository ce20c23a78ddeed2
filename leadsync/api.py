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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync import __version__, defaults
from leadsync.config import Config
from leadsync.errors import ExitCode, LeadsyncError
from leadsync.mapper import ColumnPlan, MappedRow, Problem, map_chunk, plan_columns
from leadsync.reader import Table, open_table
from leadsync.report import FAILURE_OUTCOMES, OUTCOMES, ReportWriter
from leadsync.sender import LeadClient, RowSender, SendResult, Throttle, check_base_url, redact
from leadsync.validator import IdScan, scan_ids, validate_rows

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

    @classmethod
    def open(
        cls, path: str | Path, config: Config, report_dir: str | Path | None, xlsx_report: bool
    ) -> _Run:
        started, clock, run_id = dt.datetime.now(dt.UTC), time.perf_counter(), new_run_id()
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
        return cls(config, run_id, started, clock, table, plan, scan, writer)

    def rows(self) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
        """Every row, mapped and validated, with its original cells, chunk by chunk."""
        for chunk in self.table.chunks(self.config.chunk_rows):
            rows = map_chunk(chunk, self.plan, self.config)
            validate_rows(rows, self.plan, self.config, self.scan.duplicates)
            yield from zip(rows, chunk.frame.itertuples(index=False, name=None), strict=True)

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
        )
        self.writer.close(summary)
        return RunResult(summary, self.writer.directory, exit_code, list(self.table.notices))


def validate(
    path: str | Path,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    progress: Progress | None = None,
    xlsx_report: bool = True,
    command: str = "validate",
) -> RunResult:
    """Read, map and validate every row of ``path``; write the reports; send nothing.

    Raises :class:`~leadsync.errors.LeadsyncError` when the file as a whole cannot be
    used (missing, unreadable, no id column); row problems are reported, not raised.
    """
    run = _Run.open(path, config or Config(), report_dir, xlsx_report)
    writer = run.writer
    for done, (row, cells) in enumerate(run.rows(), start=1):
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


@dataclass
class _Job:
    seq: int
    row: MappedRow
    cells: tuple[Any, ...]


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


def sync(
    path: str | Path,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    api_key: str,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    xlsx_report: bool = True,
) -> RunResult:
    """Validate every row of ``path`` and send each valid one as a PATCH; report all.

    ``stop`` lets the caller end the run early (Ctrl-C, SIGTERM): rows in flight finish,
    the rest are reported ``not_attempted``, and the result's exit code is 3.
    """
    config = config or Config()
    base_url = check_base_url(config.base_url)
    if not api_key:
        raise LeadsyncError(f"no API key: set {defaults.ENV_API_KEY} or pass --api-key-file PATH")
    run = _Run.open(path, config, report_dir, xlsx_report)
    stop = stop or threading.Event()
    throttle = Throttle(config)
    jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=config.concurrency * 2)
    results: queue.Queue[tuple[_Job, SendResult]] = queue.Queue()
    senders: list[RowSender] = []
    out = _InOrder(run.writer)
    state: dict[str, Any] = {"abort": None, "failed_in_a_row": 0}
    send_started = time.perf_counter()

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
                        result = sender.send(str(job.row.lead_id), job.row.payload)
                    except Exception as exc:  # a bug must not lose the row
                        result = SendResult(
                            "failed",
                            code="internal",
                            message=redact(f"{type(exc).__name__}: {exc}", api_key),
                        )
                results.put((job, result))
        finally:
            client.close()

    def settle(job: _Job, result: SendResult) -> None:
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
        if result.outcome == "not_attempted":
            result.message = result.message or _not_sent(state["abort"])
        out.put(
            job.seq,
            job.row,
            result.outcome,
            job.cells,
            problems=_send_problems(job.row, run.plan, result),
            http_status=result.http_status,
            fields_sent=list(job.row.payload) if result.outcome == "updated" else None,
            payload=job.row.payload,
        )

    def drain(block: float = 0.0) -> None:
        try:
            item = results.get(timeout=block) if block else results.get_nowait()
            settle(*item)
            while True:
                settle(*results.get_nowait())
        except queue.Empty:
            pass
        if progress is not None:
            progress(out.next, run.scan.rows, run.writer.counts)

    threads = [
        threading.Thread(target=worker, name=f"sender-{i}", daemon=True)
        for i in range(config.concurrency)
    ]
    for t in threads:
        t.start()
    for seq, (row, cells) in enumerate(run.rows()):
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
        if seq % 64 == 63:
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
    extra = {
        "aborted": aborted,
        "sending": {
            "base_url": base_url,
            "mode": f"pinned {config.rate:g}/s"
            if config.rate
            else f"adaptive (max {config.max_rate:g}/s)",
            "concurrency": config.concurrency,
            "requests": stats.requests,
            "retries": sum(s.retries for s in senders),
            "rate_limited_429": stats.rate_limited,
            "waited_for_retry_after": stats.waits_for_retry_after,
            "duration_s": round(send_s, 3),
            "achieved_rate": round(stats.requests / send_s, 2) if send_s > 0 else None,
        },
    }
    return run.finish("sync", exit_code, extra)


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
