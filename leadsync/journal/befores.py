"""Before-values (issue 18): for every field a sync changes, the value the lead had
before — so that ``leadsync revert RUN`` can put it back.

A before-value comes from a ``GET`` of the lead just before its ``PATCH`` (``--snapshot``:
what the lead really held), else from the journal (the value an earlier run of leadsync
confirmed: right unless someone changed the lead since, in the CRM or another tool).
A field the lead did not have is ``blank`` (the API cannot clear a field), one neither
source knows is ``unknown``, and questionnaire answers are ``appended`` (the API cannot
remove them): none of those three can be reverted, and a revert lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadsync.journal import Journal

SNAPSHOT, JOURNAL, BLANK, UNKNOWN, APPENDED = "snapshot", "journal", "blank", "unknown", "appended"
REVERTIBLE = frozenset({SNAPSHOT, JOURNAL})

SCHEMA = """
CREATE TABLE IF NOT EXISTS befores (
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    run_id TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    field TEXT NOT NULL,           -- a field name, meta.<key>, or questionnaire
    source TEXT NOT NULL,          -- snapshot, journal, blank, unknown, appended
    before TEXT,                   -- JSON (snapshot, journal); NULL otherwise
    after TEXT NOT NULL,           -- JSON: what the run sent
    PRIMARY KEY (attempt_id, field)
);
CREATE INDEX IF NOT EXISTS befores_by_run ON befores(run_id);
"""


@dataclass(frozen=True)
class Before:
    """One field a run changed on one lead: what it was, where that is known from, and
    what the run set."""

    lead_id: str
    field: str
    source: str
    before: Any
    after: Any

    @property
    def revertible(self) -> bool:
        return self.source in REVERTIBLE


def befores_of(
    payload: Mapping[str, Any], lead: Mapping[str, Any] | None, known: Mapping[str, Any]
) -> dict[str, tuple[str, Any]]:
    """field -> (source, before) for each field of ``payload`` (meta keys as
    ``meta.<key>``): from ``lead`` (a snapshot read just now) when there is one, else from
    ``known`` (the journal's confirmed values)."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in payload.items():
        if key == "questionnaire":
            out[key] = (APPENDED, None)
            continue
        names = [f"meta.{k}" for k in value] if key == "meta" else [key]
        for name in names:
            if lead is not None:
                have = field_value(lead, name)
                found = (BLANK, None) if have in (None, "") else (SNAPSHOT, have)
            elif name in known:
                found = (JOURNAL, known[name])
            else:
                found = (UNKNOWN, None)
            if found[0] in REVERTIBLE and found[1] == after_of(payload, name):
                continue  # sent unchanged (a name the account wants on every update)
            out[name] = found
    return out


def after_of(payload: Mapping[str, Any], name: str) -> Any:
    """What ``payload`` sets for ``name`` (a field, ``meta.<key>`` or questionnaire)."""
    if name.startswith("meta."):
        return payload["meta"][name[5:]]
    return payload[name]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def field_value(lead: Mapping[str, Any], name: str) -> Any:
    """What ``lead`` (or a payload) holds for ``name``: a field, or ``meta.<key>``."""
    if name.startswith("meta."):
        meta = lead.get("meta")
        return meta.get(name[5:]) if isinstance(meta, dict) else None
    return lead.get(name)


class BeforeLog:
    """The ``befores`` table of one :class:`~leadsync.journal.Journal`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @staticmethod
    def rows(
        attempt_id: int,
        run_id: str,
        lead_id: str,
        payload: Mapping[str, Any],
        befores: Mapping[str, tuple[str, Any]],
    ) -> list[tuple[Any, ...]]:
        """The rows :meth:`Journal.begin` inserts with its attempt (one transaction)."""
        return [
            (
                attempt_id,
                run_id,
                lead_id,
                name,
                source,
                None if source not in REVERTIBLE else json.dumps(before),
                json.dumps(after_of(payload, name)),
            )
            for name, (source, before) in befores.items()
        ]

    def of_run(self, run_id: str, fields: set[str] | None = None) -> list[Before]:
        """Every field ``run_id`` changed and had confirmed (its attempt ended updated),
        in the order the run sent them; ``fields``: only those (meta keys by ``meta``)."""
        with self.journal.mutex:
            rows = self.journal.db.execute(
                "SELECT b.lead_id, b.field, b.source, b.before, b.after FROM befores b "
                "JOIN attempts a ON a.id = b.attempt_id WHERE b.run_id = ? "
                "AND (a.state = 'updated' "
                "OR (a.state = 'resolved' AND a.message LIKE '%: applied')) "
                "ORDER BY a.row, b.attempt_id, b.rowid",
                (run_id,),
            ).fetchall()
        out = [
            Before(
                lead,
                name,
                source,
                None if before is None else json.loads(before),
                json.loads(after),
            )
            for lead, name, source, before, after in rows
        ]
        if fields is not None:
            out = [b for b in out if b.field in fields or b.field.split(".")[0] in fields]
        return out
