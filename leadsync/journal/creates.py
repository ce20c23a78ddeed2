"""The journal's record of ``--create`` (spec §4b): a ``POST`` is not idempotent, so each
create's intent is committed under the row's person key *before* the request and the new
lead's id after. A re-run finds the lead it made (and updates it) instead of creating
another; a create left in doubt is settled by looking the person up before anything is
re-sent (:mod:`leadsync.creating`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from leadsync.fields import update_part
from leadsync.journal.common import PENDING_SQL, RETRY_SQL, Pending, now
from leadsync.model import Outcome

if TYPE_CHECKING:
    from leadsync.journal import Journal


class CreateLog:
    """The ``creates`` table of one :class:`~leadsync.journal.Journal`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def to_retry(self, run_id: str) -> set[str]:
        """--create: the person keys whose create in ``run_id`` failed, ended unknown or
        never finished."""
        with self.journal.mutex:
            cur = self.journal.db.execute(
                f"SELECT DISTINCT person FROM creates WHERE run_id = ? AND state IN {RETRY_SQL}",
                (run_id,),
            )
            return {r[0] for r in cur.fetchall()}

    def begin(self, run_id: str, row: int, person: str, payload: Mapping[str, Any]) -> int:
        """Record a create's intent durably, before its ``POST`` goes out."""
        with self.journal.transaction() as db:
            cur = db.execute(
                "INSERT INTO creates (run_id, row, person, payload, state, started_at) "
                "VALUES (?, ?, ?, ?, 'sending', ?)",
                (run_id, row, person, json.dumps(payload, ensure_ascii=False), now()),
            )
            return int(cur.lastrowid or 0)

    def finish(
        self,
        attempt_id: int,
        run_id: str,
        outcome: str,
        payload: Mapping[str, Any],
        lead_id: str | None,
        http_status: int | None,
        code: str,
        message: str,
    ) -> None:
        """Record a create's answer; a created lead's fields become its known state (its
        questionnaire answers too: the update that may follow does not append them)."""
        with self.journal.transaction() as db:
            db.execute(
                "UPDATE creates SET state = ?, lead_id = ?, http_status = ?, code = ?, "
                "message = ?, finished_at = ? WHERE id = ?",
                (outcome, lead_id, http_status, code, message, now(), attempt_id),
            )
            if outcome == Outcome.CREATED and lead_id is not None:
                self.journal.confirm(db, lead_id, run_id, update_part(payload))

    def lead_of(self, person: str) -> str | None:
        """The lead an earlier create made for this person, if one is known."""
        with self.journal.mutex:
            row = self.journal.db.execute(
                "SELECT lead_id FROM creates WHERE person = ? AND state = 'created' "
                "AND lead_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                (person,),
            ).fetchone()
        return str(row[0]) if row else None

    def pending(self, person: str, run_id: str) -> list[Pending]:
        """Creates of earlier runs for this person whose outcome is not known."""
        with self.journal.mutex:
            rows = self.journal.db.execute(
                "SELECT id, run_id, payload, coalesce(code, '') FROM creates WHERE person = ? "
                f"AND run_id <> ? AND state IN {PENDING_SQL} ORDER BY id",
                (person, run_id),
            ).fetchall()
        return [Pending(i, r, json.loads(p), c) for i, r, p, c in rows]

    def resolve(self, pending: Pending, run_id: str, lead_id: str | None) -> None:
        """Settle an earlier create left in doubt, once the person was looked up: the
        lead it made (``lead_id``), or provably none (None)."""
        note = f"checked in run {run_id}: " + (f"created {lead_id}" if lead_id else "not created")
        with self.journal.transaction() as db:
            db.execute(
                "UPDATE creates SET state = ?, lead_id = ?, finished_at = ?, message = "
                "coalesce(message || '; ', '') || ? WHERE id = ?",
                (
                    Outcome.CREATED.value if lead_id else "resolved",
                    lead_id,
                    now(),
                    note,
                    pending.attempt_id,
                ),
            )
            if lead_id is not None:
                self.journal.confirm(db, lead_id, pending.run_id, update_part(pending.payload))

    def made_by(self, run_id: str) -> list[str]:
        """The leads ``run_id`` created."""
        with self.journal.mutex:
            rows = self.journal.db.execute(
                "SELECT lead_id FROM creates WHERE run_id = ? AND state = 'created' "
                "AND lead_id IS NOT NULL ORDER BY row",
                (run_id,),
            ).fetchall()
        return [str(r[0]) for r in rows]
