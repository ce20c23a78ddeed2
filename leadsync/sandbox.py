"""Sandbox: a local Lead API simulator on loopback (spec §8).

It serves the API of spec §1 with the same rules as the client (it calls
:func:`leadsync.validator.check_payload`), keeps leads in memory, and can rate-limit
(a token bucket or a Laravel-style fixed window) and inject faults by seeded chance:
503 *before* applying, and 500, a dropped connection or a stall *after* applying — the
ambiguous cases a careful client must survive. ``/_sandbox/*`` reports what it received
and applied.

Use it from Python (tests start it on a free port in a thread)::

    with Sandbox(SandboxConfig(latency=0.1)) as sb:
        sb.base_url            # http://127.0.0.1:PORT/api/v103
        sb.stats()["applied"]

or from the shell: ``leadsync sandbox --port 8808 --rate-limit 20``.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync.fields import API_VERSION_PATH
from leadsync.sandbox_http import ADMIN, Handler, Server
from leadsync.sandbox_limits import HEADER_STYLES, Limiter

__all__ = ["ADMIN", "DEFAULT_KEY", "Sandbox", "SandboxConfig", "parse_lead_ids", "parse_offices"]

DEFAULT_KEY = "sandbox-key"
DEFAULT_OFFICES: tuple[tuple[int, str], ...] = (
    (1213, "Bristol"),
    (1214, "Bath"),
    (1215, "Cardiff"),
    (1216, "Leeds"),
)


@dataclass
class SandboxConfig:
    """Everything the sandbox can be told; all faults are off by default."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    api_key: str = DEFAULT_KEY
    revoked_keys: tuple[str, ...] = ("revoked-key",)
    leads: Iterable[str] | None = None  # lead ids to seed; default 1000..9999 and 480001..480300
    lead_file: Path | None = None  # JSON list of lead objects with an "id"
    offices: tuple[tuple[int, str], ...] = DEFAULT_OFFICES
    require_names: bool = True
    # Rate limit: a token bucket of `rate_limit`/s with `burst`, or, when `window` is set,
    # a fixed window of `rate_limit` requests per `window` seconds (Laravel's throttle).
    rate_limit: float | None = None
    burst: int = 1
    window: float | None = None
    rate_headers: str = "x-ratelimit"  # a style of sandbox_limits.HEADER_STYLES
    rate_headers_on: str = "all"  # "all" answers, or "429" only
    retry_after: bool = True  # Retry-After on 429
    # the limit changes: (seconds after the first request, new limit), in order
    rate_schedule: tuple[tuple[float, float], ...] = ()
    latency: float = 0.0  # seconds added to every API request
    fail_503: float = 0.0  # chance of 503 before applying
    fail_500_after: float = 0.0  # chance of 500 after applying
    drop_after: float = 0.0  # chance of closing the connection after applying
    stall_after: float = 0.0  # chance of stalling (no answer) after applying
    stall_seconds: float = 30.0
    seed: int = 0
    # faults for the first PATCH and POST requests, in order ("503", "500_after",
    # "drop_after", "stall_after" or None), before the seeded chances take over
    script: tuple[str | None, ...] = ()
    lookup_503: tuple[str, ...] = ()  # emails or phones whose lead lookup answers 503
    # a chance of a fault of any kind, split evenly between 503, 500 after applying and a
    # dropped connection after applying (added to the specific chances)
    fail_rate: float = 0.0
    # POST /leads: how the answer carries the new id ("data": {"data": lead}, "flat":
    # the lead itself, "none": no id at all), and the first id it hands out
    create_answer: str = "data"
    first_new_id: int = 700001

    def __post_init__(self) -> None:
        """Refuse settings that make no sense (ValueError, naming the option)."""
        chances = {
            "fail-rate": self.fail_rate,
            "fail-503": self.fail_503,
            "fail-500-after": self.fail_500_after,
            "drop-after": self.drop_after,
            "stall-after": self.stall_after,
        }
        for name, chance in chances.items():
            if not 0 <= chance <= 1:
                raise ValueError(f"--{name}: {chance} is not a chance between 0 and 1")
        if sum(self.chances().values()) > 1:
            raise ValueError("the fault chances add up to more than 1")
        if self.window is not None and self.rate_limit is None:
            raise ValueError("--window needs --rate-limit (requests per window)")
        if self.rate_headers not in HEADER_STYLES:
            raise ValueError(f"--rate-headers: use one of {', '.join(HEADER_STYLES)}")
        if self.rate_headers_on not in ("all", "429"):
            raise ValueError("--rate-headers-on: use all or 429")
        if self.create_answer not in CREATE_ANSWERS:
            raise ValueError(f"--create-answer: use one of {', '.join(CREATE_ANSWERS)}")

    def chances(self) -> dict[str, float]:
        """Each fault's chance per request, --fail-rate included."""
        share = self.fail_rate / 3
        return {
            "503": self.fail_503 + share,
            "500_after": self.fail_500_after + share,
            "drop_after": self.drop_after + share,
            "stall_after": self.stall_after,
        }


@dataclass
class _Applied:
    count: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)


class Sandbox:
    """The simulator: a threaded HTTP server plus the in-memory leads it serves."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.lock = threading.Lock()
        self.random = random.Random(self.config.seed)
        self.leads: dict[str, dict[str, Any]] = {}
        self.limiter: Limiter | None = None
        self._reset_state()
        handler = type("Handler", (Handler,), {"sandbox": self})
        self.server = Server((self.config.host, self.config.port), handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + API_VERSION_PATH

    def start(self) -> Sandbox:
        """Serve in a background thread; the socket is already listening."""
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="sandbox", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def restart(self, down_for: float = 0.0) -> None:
        """Go away (connections refused) for ``down_for`` seconds, then serve again on the
        same port with the same leads and records: a crashed and restarted server."""
        port = self.port
        self.stop()
        time.sleep(down_for)
        self.server = Server((self.config.host, port), self.server.RequestHandlerClass)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.start()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state --------------------------------------------------------------------

    def _reset_state(self) -> None:
        c = self.config
        self.random = random.Random(c.seed)
        self.scripted = 0
        self.leads = {}
        for lead_id in _seed_ids(c):
            self.leads[lead_id] = _seed_lead(lead_id)
        if c.lead_file is not None:
            for item in json.loads(Path(c.lead_file).read_text(encoding="utf-8")):
                self.leads[str(item["id"])] = {
                    **_seed_lead(str(item["id"])),
                    **item,
                    "id": str(item["id"]),
                }
        self.limiter = (
            Limiter(c.rate_limit, c.burst, c.window, c.rate_schedule) if c.rate_limit else None
        )
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.applied: dict[str, _Applied] = {}
        self.log: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = time.monotonic()
        self.next_id = c.first_new_id
        self.created: Counter[str] = Counter()  # person (email, else phone) -> leads made

    def reset(self) -> None:
        """Forget every request and restore the seeded leads."""
        with self.lock:
            self._reset_state()

    def stats(self) -> dict[str, Any]:
        """What the sandbox received and applied (also at ``GET /_sandbox/stats``)."""
        with self.lock:
            applied = {
                lead: {
                    "count": a.count,
                    "fields": dict(a.fields),
                    "questionnaire_len": len(self.leads[lead].get("questionnaire", [])),
                    "duplicate_pairs": sum(n - 1 for n in a.pairs.values() if n > 1),
                }
                for lead, a in self.applied.items()
            }
            return {
                "requests": self.requests,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "rate_limited": self.by_status.get(429, 0),
                "faults": dict(self.faults),
                "applied": applied,
                "applied_requests": sum(a.count for a in self.applied.values()),
                "duplicate_questionnaire_pairs": sum(
                    a["duplicate_pairs"] for a in applied.values()
                ),
                "max_concurrent": self.max_in_flight,
                "created": sum(self.created.values()),
                "created_by_person": dict(self.created),
                "duplicate_creates": sum(n - 1 for n in self.created.values() if n > 1),
                "uptime_s": round(time.monotonic() - self.started, 3),
            }

    def requests_log(self) -> list[dict[str, Any]]:
        """Every API request received, in order: time, method, path, lead, status, body."""
        with self.lock:
            return copy.deepcopy(self.log)

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.leads.get(lead_id)
            return copy.deepcopy(found) if found is not None else None

    # -- request handling (called from handler threads) ---------------------------

    def office_ids(self) -> set[int]:
        return {oid for oid, _ in self.config.offices}

    def draw(self, method: str) -> str | None:
        """Decide this request's fault: scripted for the first PATCHes, else by chance."""
        c = self.config
        with self.lock:
            if method in ("PATCH", "POST") and self.scripted < len(c.script):
                self.scripted += 1
                return c.script[self.scripted - 1]
            x = self.random.random()
        for name, p in c.chances().items():
            if x < p:
                return name
            x -= p
        return None

    def apply(self, lead_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Update a lead: questionnaire appended, meta merged, other fields replaced."""
        with self.lock:
            lead = self.leads[lead_id]
            record = self.applied.setdefault(lead_id, _Applied())
            record.count += 1
            for key, value in payload.items():
                record.fields[key] += 1
                if key == "questionnaire":
                    lead.setdefault("questionnaire", []).extend(value)
                    record.pairs.update((q, a) for q, a in value)
                elif key == "meta":
                    lead.setdefault("meta", {}).update(value)
                else:
                    lead[key] = value
            lead["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return copy.deepcopy(lead)

    def create(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Make a new lead of ``payload`` (a vetted create), findable by its email and
        phone at once; counted per person, so that a test can see any duplicate."""
        with self.lock:
            lead_id = str(self.next_id)
            self.next_id += 1
            lead: dict[str, Any] = {
                "id": lead_id,
                "source": "homepage",
                "status": "New",
                "questionnaire": [],
                "meta": {},
                **copy.deepcopy(dict(payload)),
            }
            lead["created_at"] = lead["updated_at"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
            )
            self.leads[lead_id] = lead
            self.created[_person(payload)] += 1
            return copy.deepcopy(lead)


CREATE_ANSWERS = ("data", "flat", "none")


def _person(payload: Mapping[str, Any]) -> str:
    email = str(payload.get("email") or "").strip().casefold()
    if email:
        return email
    digits = "".join(ch for ch in str(payload.get("phone") or "") if ch.isdigit())
    return digits or f"{payload.get('first_name')} {payload.get('last_name')}"


def _seed_ids(c: SandboxConfig) -> Iterable[str]:
    if c.leads is not None:
        return [str(x) for x in c.leads]
    return [str(i) for i in (*range(1000, 10000), *range(480001, 480301))]


def _seed_lead(lead_id: str) -> dict[str, Any]:
    digits = "".join(ch for ch in lead_id if ch.isdigit())[-6:].rjust(6, "0")
    return {
        "id": lead_id,
        "first_name": "Lead",
        "last_name": lead_id,
        "status": "New",
        "email": f"lead{lead_id}@example.test",
        "phone": f"07700{digits}",
        "questionnaire": [],
        "meta": {},
    }


def parse_lead_ids(spec: str) -> list[str]:
    """``1000-1999,480001-480300,ABC`` → the ids it names."""
    ids: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            ids.extend(str(i) for i in range(int(lo), int(hi) + 1))
        elif part:
            ids.append(part)
    return ids


def parse_offices(spec: str) -> tuple[tuple[int, str], ...]:
    """``1213:Bristol,1214:Bath`` → ((1213, "Bristol"), (1214, "Bath"))."""
    offices = []
    for part in spec.split(","):
        oid, _, name = part.strip().partition(":")
        offices.append((int(oid), name.strip() or f"Office {oid}"))
    return tuple(offices)
