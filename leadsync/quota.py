"""What a server says of its rate limit, read from whichever headers it sends (spec §4).

One reader for every form met in the wild, so the throttle sees one :class:`Quota`:

- ``Retry-After``: seconds or an HTTP date;
- ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (Laravel, GitHub and most others);
  the reset is an epoch time (GitHub), epoch milliseconds, or seconds from now;
- the IETF drafts' older trio ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (reset in
  seconds from now; the limit may carry its policy, ``100, 100;w=60``);
- draft-07's ``RateLimit: limit=100, remaining=50, reset=5`` with
  ``RateLimit-Policy: 100;w=10``;
- draft-08 onwards' structured ``RateLimit: "default";r=50;t=5`` with
  ``RateLimit-Policy: "default";q=100;w=10`` (``l=`` in some revisions).

Every value is bounded: a hostile or broken header reads as absent, never as a wait
longer than :data:`~leadsync.defaults.MAX_WAIT`.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from leadsync.defaults import MAX_WAIT

# an X-RateLimit-Reset above this is an epoch time, not seconds from now (1e9 s is 2001)
_EPOCH_FROM = 1e9
_EPOCH_MS_FROM = 1e12
_MEMBER = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[^;,]*)((?:\s*;\s*[A-Za-z_*][\w.*-]*(?:=[^;,]*)?)*)')
_PARAM = re.compile(r";\s*([A-Za-z_*][\w.*-]*)(?:=([^;,]*))?")


def capped_wait(seconds: float) -> float:
    """A wait a server asked for, within 0 and :data:`~leadsync.defaults.MAX_WAIT`: a
    ``Retry-After: 999999`` must not stall a run until someone kills it."""
    return min(max(0.0, seconds), MAX_WAIT) if math.isfinite(seconds) else MAX_WAIT


def retry_after_seconds(value: str | None, now_epoch: float | None = None) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date), capped by :func:`capped_wait`;
    None when absent or unreadable (``nan``, garbage)."""
    if not value:
        return None
    value = value.strip()[:100]
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            now_epoch = time.time() if now_epoch is None else now_epoch
            seconds = when.timestamp() - now_epoch
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    return None if math.isnan(seconds) else capped_wait(seconds)


@dataclass(frozen=True)
class Quota:
    """A server's rate-limit state as one answer shows it; any part may be unknown."""

    limit: int | None = None  # requests per window
    remaining: int | None = None  # requests left in this window
    reset_in: float | None = None  # seconds until the window turns over (or refills)
    window: float | None = None  # the window's length in seconds, when a policy says


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    raw = raw.strip().strip('"')[:100]
    match = re.match(r"[-+]?\d+(?:\.\d+)?", raw)  # "100, 100;w=60": the first number
    if not match:
        return None
    value = float(match.group())
    return value if math.isfinite(value) and abs(value) < 1e15 else None


def _count(raw: str | None) -> int | None:
    value = _number(raw)
    return None if value is None or value < 0 else int(value)


def _members(raw: str) -> list[tuple[str, dict[str, str]]]:
    """A structured-field list, tolerantly: ``"name";q=1;w=2, 10;w=1`` →
    ``[("name", {"q": "1", "w": "2"}), ("10", {"w": "1"})]``."""
    out: list[tuple[str, dict[str, str]]] = []
    for match in _MEMBER.finditer(raw[:2000]):
        item, params = match.group(1).strip().strip('"'), match.group(2)
        if not item and not params:
            continue
        out.append((item, {k.lower(): (v or "").strip() for k, v in _PARAM.findall(params)}))
    return out


def _policy_window(
    raw: str | None,
) -> tuple[int | None, float | None, dict[str, tuple[int | None, float | None]]]:
    """``RateLimit-Policy`` (or a policy inside ``RateLimit-Limit``): the first policy's
    quota and window, and every named policy's."""
    if not raw:
        return None, None, {}
    named: dict[str, tuple[int | None, float | None]] = {}
    first: tuple[int | None, float | None] | None = None
    for item, params in _members(raw):
        quota = (
            _count(params.get("q") or params.get("l"))
            if ("q" in params or "l" in params)
            else _count(item)
        )
        window = _number(params.get("w"))
        entry = (quota, window if window is not None and window > 0 else None)
        named[item] = entry
        if first is None:
            first = entry
    quota, window = first or (None, None)
    return quota, window, named


def _reset(raw: str | None, now_epoch: float, epoch_allowed: bool) -> float | None:
    value = _number(raw)
    if value is None:
        return None
    if epoch_allowed and value >= _EPOCH_MS_FROM:
        value = value / 1000 - now_epoch
    elif epoch_allowed and value >= _EPOCH_FROM:
        value = value - now_epoch
    return capped_wait(value)


def read_quota(headers: Mapping[str, str], now_epoch: float | None = None) -> Quota | None:
    """The rate-limit state an answer's headers show, or None when they show none."""
    h = {
        k.lower(): v
        for k, v in headers.items()
        if k.lower().startswith(("x-ratelimit", "ratelimit"))
    }
    if not h:
        return None
    now_epoch = time.time() if now_epoch is None else now_epoch
    policy_limit, window, named = _policy_window(h.get("ratelimit-policy"))
    structured = h.get("ratelimit")
    if structured is not None:
        members = _members(structured)
        if members and any(k in members[0][1] for k in ("r", "t")):
            # draft-08+: one member per policy; the one closest to its limit governs
            scored = [(m, p) for m, p in members if _count(p.get("r")) is not None] or members
            name, params = min(scored, key=lambda mp: _count(mp[1].get("r")) or 0)
            limit, win = named.get(name, (policy_limit, window))
            return Quota(
                limit, _count(params.get("r")), _reset(params.get("t"), now_epoch, False), win
            )
        # draft-07: a dictionary
        fields = dict(re.findall(r"(limit|remaining|reset)\s*=\s*([^,;\s]+)", structured.lower()))
        if fields:
            return Quota(
                _count(fields.get("limit")) or policy_limit,
                _count(fields.get("remaining")),
                _reset(fields.get("reset"), now_epoch, False),
                window,
            )
    if "ratelimit-limit" in h or "ratelimit-remaining" in h:
        raw_limit = h.get("ratelimit-limit")
        if window is None and raw_limit and ";" in raw_limit:
            _, window, _ = _policy_window(raw_limit.split(",", 1)[-1])
        return Quota(
            _count(raw_limit) or policy_limit,
            _count(h.get("ratelimit-remaining")),
            _reset(h.get("ratelimit-reset"), now_epoch, False),
            window,
        )
    if any(k.startswith("x-ratelimit") for k in h):
        return Quota(
            _count(h.get("x-ratelimit-limit")),
            _count(h.get("x-ratelimit-remaining")),
            _reset(h.get("x-ratelimit-reset"), now_epoch, True),
            window,
        )
    return Quota(policy_limit, None, None, window) if policy_limit is not None else None


def asked_wait(headers: Mapping[str, str], now_epoch: float | None = None) -> float | None:
    """How long a 429 asks before its request is sent again: ``Retry-After``, else the
    limit's reset (GitHub's ``X-RateLimit-Reset``, the IETF ``t=``); None when it does not
    say."""
    wait = retry_after_seconds(headers.get("Retry-After"), now_epoch)
    if wait is None:
        quota = read_quota(headers, now_epoch)
        wait = quota.reset_in if quota is not None else None
    return wait
