"""``--match-by``: find the lead of every row that has an email or phone and no id, before
anything is sent, so that one lead on two rows (two lookups, or a lookup and an id) stops
both rows: its questionnaire answers would be appended twice."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

from leadsync.errors import AbortError
from leadsync.model import Code, Lookup, MappedRow, Outcome, SendResult
from leadsync.sender import RowSender


def not_sent(reason: str | None) -> str:
    """The message of a row the run did not send."""
    return f"not sent: {reason}" if reason else "not sent: the run was stopped"


class Lookups:
    """Every looked-up row's lead, and the leads more than one row would update."""

    def __init__(self, by: str, create: bool = False) -> None:
        self.by, self.create = by, create  # create: a row whose value finds no lead is created
        self.by_value: dict[str, Lookup] = {}  # value -> what its lookup found
        self.rows_of: dict[str, list[int]] = {}  # lead -> the rows that update it
        self.abort: str | None = None  # the API refused the key while looking up

    def result(self, row: MappedRow) -> SendResult | None:
        """Why ``row`` must not be sent (None: it may); sets a looked-up row's lead id
        (with ``create``, a row whose value finds no lead keeps none: it is created)."""
        found = self.by_value.get(row.match or "") if row.lead_id is None else None
        looked_up = found is not None
        if found is not None:
            lead, why, failed, matches = found
            if lead is None and failed:  # the API could not be asked: worth a retry
                return SendResult(Outcome.FAILED, code=Code.LOOKUP_FAILED, message=why)
            if lead is None and self.create and matches == 0:
                return None
            if lead is None:
                return SendResult(Outcome.INVALID, code=Code.NO_SINGLE_MATCH, message=why)
            row.lead_id = lead
        elif row.lead_id is None and self.create and not row.match:
            return None  # nothing to look up by: created
        if row.lead_id is None:  # not looked up: the run stopped first
            return SendResult(Outcome.NOT_ATTEMPTED, code=Code.STOPPED, message=not_sent(None))
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
            Outcome.INVALID,
            code=Code.ID_DUPLICATE,
            message=f"{what}: one lead on two rows would get its questionnaire twice; keep one row",
        )


def look_up(
    by: str,
    rows: Iterable[MappedRow],
    new_sender: Callable[[], RowSender],
    concurrency: int,
    stop: threading.Event,
    create: bool = False,
) -> Lookups:
    """Look up every distinct ``by`` value of ``rows`` (the valid rows this run sends),
    ``concurrency`` lookups in flight, each worker with its own sender."""
    lookups = Lookups(by, create)
    wanted: dict[str, list[int]] = {}  # value -> rows (one lookup per distinct value)
    named: dict[str, int] = {}  # lead id given outright -> its row
    for row in rows:
        if row.lead_id is not None:
            named[str(row.lead_id)] = row.row
        elif row.match:
            wanted.setdefault(row.match, []).append(row.row)
    todo: queue.Queue[str | None] = queue.Queue()
    for value in wanted:
        todo.put(value)

    def worker() -> None:
        sender = new_sender()
        try:
            while (value := todo.get()) is not None:
                try:
                    found = sender.find_lead(by, value)
                except AbortError:
                    raise
                except Exception as exc:  # a bug or a strange answer must not stop the run
                    found = Lookup(
                        None, f"looking the lead up failed: {type(exc).__name__}", True, -1
                    )
                lookups.by_value[value] = found  # dict writes are atomic
        except AbortError as exc:  # a refused key: nothing is sent
            lookups.abort = lookups.abort or str(exc)
            stop.set()
        finally:
            sender.client.close()

    threads = [
        threading.Thread(target=worker, name=f"lookup-{i}", daemon=True)
        for i in range(min(concurrency, len(wanted)))
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
