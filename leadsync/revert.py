"""``leadsync revert RUN`` (issue 18): put back what a bad sync changed.

For every lead RUN updated, the lead is read first; each field RUN changed is then

- ``reverted`` — it still holds what RUN set: it is sent back to its before-value (one
  ``PATCH`` per lead, its fields together);
- ``conflict`` — it holds something else now (someone changed it since): left alone;
- ``not_revertible`` — a questionnaire answer (the API cannot remove one), a field that
  was blank before (the API cannot clear one), a before-value that was not recorded, or
  a lead RUN created (a revert does not delete leads).

A revert is a run like any other: journalled (so it is itself revertible, and a crashed
revert re-run finds the fields it already put back), reported (``revert-plan.csv`` is its
input: a line per lead and field), under the same throttle, retries, lock and guards.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from leadsync import defaults
from leadsync.client import LeadClient, check_base_url, redact
from leadsync.config import IGNORE, Config
from leadsync.errors import ExitCode, LeadsyncError
from leadsync.fields import REQUIRED_NAMES, normalise_header
from leadsync.guards import guards_for, judge_all
from leadsync.journal import Journal
from leadsync.journal.befores import APPENDED, BLANK, Before, befores_of, field_value
from leadsync.model import FAILURE_OUTCOMES, Code, MappedRow, Outcome, Problem, SendResult
from leadsync.report import InOrder
from leadsync.run import Run, RunResult, new_run_id
from leadsync.sender import RowSender, same_value
from leadsync.summary import sending_figures
from leadsync.throttle import Throttle

PLAN_FILE = "revert-plan.csv"
PLAN_COLUMNS = ("Lead ID", "Field changed", "Set by the run", "Revert to", "Before from")


@dataclass(frozen=True)
class Item:
    """One line of a revert: a field of a lead, or a lead the run created."""

    row: int  # its line in revert-plan.csv (header = 1)
    lead_id: str
    field: str
    before: Before | None  # None: a lead the run created

    def cells(self) -> tuple[str, ...]:
        if self.before is None:
            return (self.lead_id, "(created)", "", "", "")
        b = self.before
        back = _text(b.before) if b.revertible else ""
        return (self.lead_id, b.field, _text(b.after), back, b.source)


def plan_revert(book: Journal, run_id: str, fields: set[str] | None = None) -> list[Item]:
    """What reverting ``run_id`` would do, line by line, from the journal alone."""
    items: list[Item] = []
    for before in book.befores.of_run(run_id, fields):
        items.append(Item(len(items) + 2, before.lead_id, before.field, before))
    if fields is None:
        for lead in book.creates.made_by(run_id):
            items.append(Item(len(items) + 2, lead, "(created)", None))
    return items


def revertible(items: list[Item]) -> str:
    """How much of a run a revert can put back, in a line (``leadsync runs --show``)."""
    if not items:
        return "nothing to revert (no field changes recorded)"
    can = [i for i in items if i.before is not None and i.before.revertible]
    leads = len({i.lead_id for i in can})
    kinds: dict[str, int] = {}
    for item in items:
        if item.before is None:
            kinds["leads created"] = kinds.get("leads created", 0) + 1
        elif not item.before.revertible:
            label = {"appended": "answers appended", "blank": "fields blank before"}.get(
                item.before.source, "before-values not recorded"
            )
            kinds[label] = kinds.get(label, 0) + 1
    line = f"revertible: {len(can):,} field(s) of {leads:,} lead(s)"
    if kinds:
        line += "; not revertible: " + ", ".join(f"{n:,} {k}" for k, n in kinds.items())
    return line + " (if nobody has changed them since)"


def revert(
    run: str,
    config: Config | None = None,
    report_dir: str | Path | None = None,
    *,
    api_key: str,
    journal: str | Path,
    fields: set[str] | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Revert run ``run`` (an id, a prefix of one, or ``last``); report every line."""
    config = config or Config()
    base_url = check_base_url(config.base_url)
    if not api_key:
        raise LeadsyncError(f"no API key: set {defaults.ENV_API_KEY} or pass --api-key-file PATH")
    book = Journal(journal)
    book.acquire()
    try:
        target = book.find_run(run)
        items = plan_revert(book, target["run_id"], fields)
        if not items:
            raise LeadsyncError(
                f"run {target['run_id']} changed nothing that can be reverted "
                "(see `leadsync runs --show`)"
            )
        run_id = new_run_id()
        directory = Path(report_dir) if report_dir else Path(config.report_root) / run_id
        plan_path = write_plan(directory, items)
        ignore = {normalise_header(h): IGNORE for h in PLAN_COLUMNS[1:]}
        plan_config = replace(config, columns=MappingProxyType(ignore), create=False)
        opened = Run.open(plan_path, plan_config, directory, True)
        opened.run_id = run_id
        book.start_run(
            run_id, "revert", f"revert of {target['run_id']}", opened.sha256, str(directory)
        )
        reverter = _Reverter(opened, config, book, base_url, api_key, stop or threading.Event())
        exit_code, extra = reverter.revert_all(items)
        extra["reverts"] = target["run_id"]
        book.finish_run(run_id, int(exit_code), opened.writer.counts, extra.get("aborted"))
        return opened.finish("revert", exit_code, extra)
    finally:
        book.close()


def write_plan(directory: Path, items: list[Item]) -> Path:
    """``revert-plan.csv``: the revert's input, a line per lead and field (owner-only)."""
    from leadsync.private import open_private

    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LeadsyncError(f"cannot write the reports to {directory}: {exc.strerror}") from None
    path = directory / PLAN_FILE
    with open_private(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(PLAN_COLUMNS)
        writer.writerows(item.cells() for item in items)
    return path


class _Reverter:
    """The revert of one run: a lead at a time per worker, ``concurrency`` workers."""

    def __init__(
        self,
        run: Run,
        config: Config,
        book: Journal,
        base_url: str,
        api_key: str,
        stop: threading.Event,
    ) -> None:
        self.run, self.config, self.book, self.stop = run, config, book, stop
        self.base_url, self.api_key = base_url, api_key
        self.throttle = Throttle(config)
        self.guards = guards_for(config)
        self.abort: str | None = None
        self.local = threading.local()
        self.senders: list[RowSender] = []
        self.lock = threading.Lock()

    def revert_all(self, items: list[Item]) -> tuple[ExitCode, dict[str, Any]]:
        """Every lead of ``items``, ``concurrency`` at a time; each line reported once."""
        by_lead: dict[str, list[Item]] = {}
        for item in items:
            by_lead.setdefault(item.lead_id, []).append(item)
        started = time.perf_counter()
        out = InOrder(self.run.writer, len(items), None)
        cells = {item.row: item.cells() for item in items}
        groups = list(by_lead.values())
        try:
            with ThreadPoolExecutor(self.config.concurrency, "revert") as pool:
                for done in pool.map(self._lead, groups):
                    for item, outcome, why, message in done:
                        self._write(out, item, outcome, why, message, cells[item.row])
        finally:
            for sender in self.senders:
                sender.client.close()
        out.flush()
        counts = self.run.writer.counts
        if self.abort or self.stop.is_set():
            exit_code = ExitCode.ABORTED
        elif any(counts[o] for o in FAILURE_OUTCOMES):
            exit_code = ExitCode.ROWS_FAILED
        else:
            exit_code = ExitCode.OK
        took = time.perf_counter() - started
        sending = sending_figures(self.config, self.base_url, self.throttle, self.senders, took)
        aborted = self.abort or (
            "stopped before the end (interrupted)" if self.stop.is_set() else None
        )
        return exit_code, {"aborted": aborted, "sending": sending}

    def _write(
        self, out: InOrder, item: Item, outcome: Outcome, code: str, message: str, cells: Any
    ) -> None:
        row = MappedRow(row=item.row, lead_id=item.lead_id, payload={})
        problems = (
            []
            if outcome == Outcome.REVERTED
            else [
                Problem(item.row, code, message, item.field if item.before else None, stage="send")
            ]
        )
        out.put(
            item.row - 2,
            row,
            outcome,
            cells,
            problems=problems,
            fields_sent=[item.field] if outcome == Outcome.REVERTED else [],
        )

    def _sender(self) -> RowSender:
        sender = getattr(self.local, "sender", None)
        if sender is None:
            client = LeadClient(self.base_url, self.api_key, self.config)
            sender = RowSender(client, self.throttle, self.config, self.stop)
            self.local.sender = sender
            with self.lock:
                self.senders.append(sender)
        return sender

    def _lead(self, items: list[Item]) -> list[tuple[Item, Outcome, str, str]]:
        """One lead: read it, decide each field, send back what still holds RUN's value."""
        try:
            return self._revert_lead(items)
        except Exception as exc:  # a bug must not lose the lines
            text = redact(f"{type(exc).__name__}: {exc}", self.api_key)
            return [(i, Outcome.FAILED, Code.INTERNAL, text) for i in items]

    def _revert_lead(self, items: list[Item]) -> list[tuple[Item, Outcome, str, str]]:
        lead_id = items[0].lead_id
        if self.stop.is_set():
            why = f"not sent: {self.abort}" if self.abort else "not sent: the run was stopped"
            return [(i, Outcome.NOT_ATTEMPTED, Code.NOT_ATTEMPTED, why) for i in items]
        out: list[tuple[Item, Outcome, str, str]] = []
        fields = [i for i in items if i.before is not None]
        for item in items:
            if item.before is None:
                out.append((item, Outcome.NOT_REVERTIBLE, Code.CREATED_BY_RUN,
                            f"lead {lead_id} was created by the run: a revert does not delete "
                            "leads (delete it in the CRM if it should not exist)"))  # fmt: skip
        if not fields:
            return out
        sender = self._sender()
        read = sender.read_lead(lead_id)
        if read.status is None or (read.status != 404 and read.lead is None):
            why = f"reading the lead failed ({read.failure or f'HTTP {read.status}'}): not reverted"
            return out + [(i, Outcome.FAILED, Code.GAVE_UP, why) for i in fields]
        if read.status == 404 or read.lead is None:
            return out + [
                (i, Outcome.CONFLICT, Code.LEAD_GONE, f"lead {lead_id} no longer exists")
                for i in fields
            ]
        lead = read.lead
        send: dict[str, Any] = {}
        to_send: list[Item] = []
        for item in fields:
            b = item.before
            assert b is not None
            now = field_value(lead, b.field)
            if b.source == APPENDED:
                out.append((item, Outcome.NOT_REVERTIBLE, Code.APPENDED,
                            "questionnaire answers cannot be removed through the API: "
                            f"{_text(b.after)} stays"))  # fmt: skip
            elif now is not None and same_value(now, b.after):
                if b.source == BLANK:
                    out.append((item, Outcome.NOT_REVERTIBLE, Code.BLANK_BEFORE,
                                f"{b.field} was blank before the run, and the API cannot "
                                "clear a field: clear it in the CRM"))  # fmt: skip
                elif not b.revertible:
                    out.append((item, Outcome.NOT_REVERTIBLE, Code.BEFORE_UNKNOWN,
                                f"what {b.field} held before the run was not recorded (sync "
                                "with --snapshot to record it)"))  # fmt: skip
                else:
                    _place(send, b.field, b.before)
                    to_send.append(item)
            elif b.revertible and now is not None and same_value(now, b.before):
                out.append((item, Outcome.REVERTED, "", "already holds its value before the run"))
            else:
                out.append((item, Outcome.CONFLICT, Code.CHANGED_SINCE,
                            f"{b.field} is {_text(now)} now, not {_text(b.after)} as the run set "
                            "it: changed since, left alone"))  # fmt: skip
        if send:
            out += self._send(lead_id, lead, send, to_send)
        return out

    def _send(
        self, lead_id: str, lead: dict[str, Any], send: dict[str, Any], items: list[Item]
    ) -> list[tuple[Item, Outcome, str, str]]:
        if self.config.require_names:  # the account wants the names on every update
            for name in REQUIRED_NAMES:
                if name not in send and isinstance(lead.get(name), str) and lead[name]:
                    send[name] = lead[name]
        # what the lead holds now is this revert's own before-value: a revert is revertible
        befores = befores_of(send, lead, {})
        attempt = self.book.begin(self.run.run_id, items[0].row, lead_id, send, befores)
        result = self._sender().send(lead_id, send)
        self.book.finish(attempt, lead_id, self.run.run_id, result.outcome, send,
                         result.http_status, result.code, result.message)  # fmt: skip
        self._judge(result)
        if result.outcome == Outcome.UPDATED:
            return [(i, Outcome.REVERTED, "", "") for i in items]
        return [(i, result.outcome, result.code, result.message) for i in items]

    def _judge(self, result: SendResult) -> None:
        with self.lock:
            why = judge_all(self.guards, result)
            if why and self.abort is None:
                self.abort = why
                self.stop.set()


def _place(payload: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("meta."):
        payload.setdefault("meta", {})[name[5:]] = value
    else:
        payload[name] = value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
