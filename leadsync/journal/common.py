"""What the journal's parts share: the states an attempt can be in, the time stamps, and
an attempt whose outcome is not known."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leadsync.model import Outcome

SENDING = "sending"  # an attempt's state from before its request until its answer
PENDING = (SENDING, Outcome.UNKNOWN.value)  # may or may not have been applied
# --retry-failed takes these: the retryable outcomes, and attempts a crash left in flight
PENDING_SQL = "(" + ", ".join(f"'{s}'" for s in PENDING) + ")"
RETRY_SQL = "(" + ", ".join(f"'{s}'" for s in (SENDING, *(o for o in Outcome if o.retryable))) + ")"


def fingerprint(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Pending:
    """An earlier attempt whose outcome is not known (a crash, or an ambiguous answer)."""

    attempt_id: int
    run_id: str
    payload: dict[str, Any]
    code: str = ""  # what the attempt ended with, if it ended (no_id_in_answer, ...)
