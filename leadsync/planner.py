"""The planner: what a sync would change, field by field, old → new, sending nothing.

Old values come from the journal's last confirmed state, or with ``live`` from
``GET /leads/<id>`` (throttled and retried like every GET of a sync).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadsync import defaults
from leadsync.client import LeadClient, refused_key
from leadsync.config import Config
from leadsync.creating import person_key
from leadsync.errors import AbortError, LeadsyncError
from leadsync.fields import update_part
from leadsync.journal import Journal, diff_payload
from leadsync.run import open_rows, validated_rows
from leadsync.sender import RowSender
from leadsync.throttle import Throttle


@dataclass(frozen=True)
class Change:
    """One field a sync would change: the old value (as far as known) and the new one."""

    row: int
    lead_id: str
    field: str
    old: Any
    new: Any


_UNKNOWN = "(not known)"
NEW_LEAD = "(new)"  # the lead id column of a lead --create would make
_NEW = "(new lead)"  # the old value of each of its fields


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
    table, col_plan, scan = open_rows(path, config)
    book = Journal(journal) if journal is not None and Path(journal).exists() else None
    client = reader = None
    if live:
        if not api_key:
            raise LeadsyncError(f"--live needs the API key: set {defaults.ENV_API_KEY}")
        client = LeadClient(config.base_url, api_key, config)  # which checks the URL
        reader = RowSender(client, Throttle(config), config, threading.Event())
    try:
        for row, _ in validated_rows(table, col_plan, config, scan):
            if row.blank:
                continue
            if row.problems or (row.lead_id is None and not config.create):
                if left_out is not None:
                    left_out.append(row.row)
                continue
            if row.lead_id is None:  # --create: a new lead, unless an earlier run made it
                made = book.creates.lead_of(person_key(row.payload)) if book is not None else None
                if made is None:
                    # with --match-by the lookup (at sync time) may find the lead instead
                    yield from _changes(row.row, NEW_LEAD, row.payload, {})
                    continue
                row.lead_id = made
            lead = row.lead_id
            update = update_part(row.payload)
            if reader is not None:
                known = _live_lead(reader, lead)
                fields = {k: v for k, v in known.items() if k != "questionnaire"}
                fields.update({f"meta.{k}": v for k, v in (known.get("meta") or {}).items()})
                pairs = {tuple(p) for p in known.get("questionnaire") or [] if isinstance(p, list)}
                diff = diff_payload(update, fields, pairs)
            elif book is not None:
                diff = book.diff(lead, update)
                fields = book.known(lead)[0]
            else:
                diff, fields = dict(update), {}
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
    unknown = _NEW if lead == NEW_LEAD else _UNKNOWN
    for key, value in diff.items():
        if key == "questionnaire":
            for q, a in value:
                yield Change(row, lead, f"questionnaire: {q}", "(appended)", a)
        elif key == "meta":
            for k, v in value.items():
                yield Change(row, lead, f"meta: {k}", fields.get(f"meta.{k}", unknown), v)
        else:
            yield Change(row, lead, key, fields.get(key, unknown), value)
