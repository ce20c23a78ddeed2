"""Retention and erasure (issue 16): the journal and the report folders hold personal
data, and UK GDPR asks that it is kept no longer than needed and erased on request.

- :func:`prune` (``--keep-runs 90d``): runs older than that lose their rows from the
  journal — attempts, lookups, creates — and their report folders. Two things stay,
  because leadsync cannot keep its promises without them: each lead's last confirmed
  values (change detection: without them a questionnaire answer would be appended
  again) and, for each lead leadsync created, who it was created for (without it a
  re-run would create the person again). Both go with :func:`forget`. An attempt whose
  outcome is still unknown stays until it is settled.
- :func:`forget` (``leadsync forget --lead/--email/--phone``): everything the journal
  holds about one person, and nothing about anyone else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadsync.creating import person_key
from leadsync.model import FAILURE_COLUMNS

if TYPE_CHECKING:
    from leadsync.journal import Journal

_PENDING = ("sending", "unknown")
_REPORT_FILES = ("failures.csv", "successes.csv", "summary.json", "report.xlsx")


def prune(journal: Journal, keep_seconds: float, now: dt.datetime | None = None) -> dict[str, int]:
    """Drop what runs older than ``keep_seconds`` left in ``journal`` and their report
    folders; returns how much went, per kind."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = (now - dt.timedelta(seconds=keep_seconds)).isoformat(timespec="milliseconds")
    gone: dict[str, int] = {}
    with journal.transaction() as db:
        old = db.execute(
            "SELECT run_id, report_dir FROM runs WHERE started_at < ? AND status <> 'running'",
            (cutoff,),
        ).fetchall()
        ids = [r[0] for r in old]
        marks = ",".join("?" * len(ids))
        if not ids:
            return {"runs": 0}
        pending = ",".join(f"'{s}'" for s in _PENDING)
        # their before-values go with them: a run that old is not reverted any more
        gone["before_values"] = db.execute(
            f"DELETE FROM befores WHERE attempt_id IN (SELECT id FROM attempts "
            f"WHERE run_id IN ({marks}) AND state NOT IN ({pending}))",
            ids,
        ).rowcount
        gone["attempts"] = db.execute(
            f"DELETE FROM attempts WHERE run_id IN ({marks}) AND state NOT IN ({pending})", ids
        ).rowcount
        gone["lookups"] = db.execute(f"DELETE FROM matches WHERE run_id IN ({marks})", ids).rowcount
        gone["creates"] = db.execute(
            f"DELETE FROM creates WHERE run_id IN ({marks}) "
            f"AND state NOT IN ('created', {pending})",
            ids,
        ).rowcount
        # a created lead keeps who it is for (never created twice), not what was posted
        db.execute(
            f"UPDATE creates SET payload = '{{}}' WHERE run_id IN ({marks}) AND state = 'created'",
            ids,
        )
        gone["runs"] = db.execute(
            f"DELETE FROM runs WHERE run_id IN ({marks}) AND run_id NOT IN "
            "(SELECT run_id FROM attempts UNION SELECT run_id FROM creates)",
            ids,
        ).rowcount
    gone["report_folders"] = sum(_remove_reports(Path(d)) for _, d in old if d)
    return gone


def _remove_reports(folder: Path) -> int:
    """Remove a run's report folder: leadsync's own files, then the folder if that left
    it empty (a folder that holds anything else is the user's, and stays)."""
    if not folder.is_dir() or folder.is_symlink():
        return 0
    for name in _REPORT_FILES:
        target = folder / name
        if target.is_file() and not target.is_symlink():
            target.unlink()
    for leftover in folder.glob(".*.partial"):
        leftover.unlink()
    try:
        folder.rmdir()
    except OSError:
        return 0
    return 1


def forget(
    journal: Journal,
    *,
    lead: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> dict[str, Any]:
    """Remove everything ``journal`` holds about one person: by lead id, or by the email
    or phone leadsync looked them up or created them by. Returns how much went."""
    person = _person(email, phone)
    with journal.transaction() as db:
        leads = {lead} if lead else set()
        if person is not None:
            kind, value = person
            leads |= {
                r[0]
                for r in db.execute(
                    "SELECT lead_id FROM creates WHERE person = ? AND lead_id IS NOT NULL",
                    (f"{kind}:{value}",),
                )
            }
            leads |= {
                str(r[1])
                for r in db.execute(
                    "SELECT value, lead_id FROM matches WHERE match_by = ?", (kind,)
                )
                if r[1] is not None and _same(kind, r[0], value)
            }
        found = sorted(leads)
        marks = ",".join("?" * len(found))
        gone: dict[str, Any] = {"leads": found}
        if found:
            for table in ("befores", "lead_fields", "lead_pairs", "attempts"):
                gone[table] = db.execute(
                    f"DELETE FROM {table} WHERE lead_id IN ({marks})", found
                ).rowcount
        creates = db.execute(
            f"DELETE FROM creates WHERE person = ? OR lead_id IN ({marks or 'NULL'})",
            [f"{person[0]}:{person[1]}" if person else "", *found],
        ).rowcount
        gone["creates"] = creates
        lookups = 0
        rows = db.execute("SELECT run_id, match_by, value, lead_id FROM matches").fetchall()
        for run_id, by, value, found_lead in rows:
            if (found_lead is not None and str(found_lead) in leads) or (
                person is not None and by == person[0] and _same(by, value, person[1])
            ):
                db.execute(
                    "DELETE FROM matches WHERE run_id = ? AND match_by = ? AND value = ?",
                    (run_id, by, value),
                )
                lookups += 1
        gone["lookups"] = lookups
    return gone


def _person(email: str | None, phone: str | None) -> tuple[str, str] | None:
    """(kind, normalised value) as the journal keys people (see creating.person_key)."""
    if email:
        return "email", person_key({"email": email}).partition(":")[2]
    if phone:
        return "phone", person_key({"phone": phone}).partition(":")[2]
    return None


def _same(kind: str, value: str, normalised: str) -> bool:
    return _person(value if kind == "email" else None, value if kind == "phone" else None) == (
        kind,
        normalised,
    )


def report_folders_with(folders: Iterable[Path], lead: str) -> list[Path]:
    """Report folders whose failures.csv or successes.csv has a line for ``lead`` (what
    :func:`forget` cannot erase: the reports are the user's files, pruned by age)."""
    import csv

    out = []
    for folder in folders:
        for name in ("failures.csv", "successes.csv"):
            path = folder / name
            try:
                with path.open(encoding="utf-8", newline="") as fh:
                    reader = csv.reader(fh)
                    header = next(reader, [])
                    at = header.index(FAILURE_COLUMNS[1]) if FAILURE_COLUMNS[1] in header else 1
                    if any(len(r) > at and r[at] == lead for r in reader):
                        out.append(folder)
                        break
            except OSError:
                continue
    return out
