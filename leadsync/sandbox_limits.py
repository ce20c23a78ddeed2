"""The sandbox's rate limiters: every limiter shape the throttle must do well on (spec §4).

A token bucket (``rate`` per second, ``burst`` deep) or a fixed window (``rate`` requests
per ``window`` seconds, opened by its first request, as Laravel's throttle does), whose
limit may follow a schedule (``((0, 20), (30, 5), (60, 20))``: 20/s, then 5/s from the
30th second after the first request, ...). Its state goes out in one of the header styles
servers use, on every answer or on 429s only:

==================== ===================================================================
``x-ratelimit``      ``X-RateLimit-Limit``/``-Remaining`` (Laravel); 429s add
                     ``X-RateLimit-Reset`` as an epoch time
``x-ratelimit-epoch`` the same, with ``X-RateLimit-Reset`` (epoch, GitHub) on every answer
``x-ratelimit-seconds`` the same, with ``X-RateLimit-Reset`` in seconds from now
``ietf-trio``        ``RateLimit-Limit``/``-Remaining``/``-Reset`` (the IETF drafts to -06)
``ietf``             ``RateLimit-Policy: "default";q=N;w=W`` and ``RateLimit:
                     "default";r=R;t=T`` (the structured fields of draft-08 onwards)
``none``             no rate headers at all
==================== ===================================================================
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

HEADER_STYLES = (
    "x-ratelimit",
    "x-ratelimit-epoch",
    "x-ratelimit-seconds",
    "ietf-trio",
    "ietf",
    "none",
)


@dataclass(frozen=True)
class Verdict:
    """One request's fate: let through or not, the count left, seconds to the reset."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # until the window turns over, or the bucket has a token again


class Limiter:
    """A token bucket or a fixed window; thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        window: float | None = None,
        schedule: tuple[tuple[float, float], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_rate, self.window, self.schedule = rate, window, tuple(sorted(schedule))
        self.burst = max(1, burst)
        self.clock = clock
        self.lock = threading.Lock()
        self.first: float | None = None  # the first request: the schedule counts from it
        self.tokens = float(self.burst)
        self.last = 0.0
        self.opened: float | None = None  # the current window's first request
        self.hits = 0

    def rate_at(self, elapsed: float) -> float:
        """The limit in force ``elapsed`` seconds after the first request."""
        rate = self.base_rate
        for since, value in self.schedule:
            if elapsed >= since:
                rate = value
        return rate

    def take(self) -> Verdict:
        """Count one request."""
        with self.lock:
            now = self.clock()
            if self.first is None:
                self.first, self.last = now, now
            rate = self.rate_at(now - self.first)
            if self.window is not None:
                return self._window(now, int(rate))
            return self._bucket(now, rate)

    def _window(self, now: float, limit: int) -> Verdict:
        assert self.window is not None
        if self.opened is None or now - self.opened >= self.window:
            self.opened, self.hits = now, 0
        reset_in = self.window - (now - self.opened)
        if self.hits < limit:
            self.hits += 1
            return Verdict(True, limit, limit - self.hits, reset_in)
        return Verdict(False, limit, 0, reset_in)

    def _bucket(self, now: float, rate: float) -> Verdict:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * rate)
        self.last = now
        limit = max(1, int(rate))
        if self.tokens >= 1:
            self.tokens -= 1
            return Verdict(True, limit, int(self.tokens), (1 - min(self.tokens, 1)) / rate)
        return Verdict(False, limit, 0, (1 - self.tokens) / rate)


def limit_headers(
    verdict: Verdict, style: str, window: float | None, retry_after: bool, now_epoch: float
) -> dict[str, str]:
    """The headers an answer carries in ``style`` (``Retry-After`` only on a 429, rounded
    up to whole seconds as servers send it)."""
    headers: dict[str, str] = {}
    reset = max(1, math.ceil(verdict.reset_in))
    if not verdict.allowed and retry_after:
        headers["Retry-After"] = str(reset)
    limit, remaining = str(verdict.limit), str(verdict.remaining)
    if style.startswith("x-ratelimit"):
        headers["X-RateLimit-Limit"] = limit
        headers["X-RateLimit-Remaining"] = remaining
        if style == "x-ratelimit-epoch" or (style == "x-ratelimit" and not verdict.allowed):
            headers["X-RateLimit-Reset"] = str(math.ceil(now_epoch + verdict.reset_in))
        elif style == "x-ratelimit-seconds":
            headers["X-RateLimit-Reset"] = str(reset)
    elif style == "ietf-trio":
        headers["RateLimit-Limit"] = limit
        headers["RateLimit-Remaining"] = remaining
        headers["RateLimit-Reset"] = str(reset)
    elif style == "ietf":
        w = f";w={math.ceil(window)}" if window is not None else ";w=1"
        headers["RateLimit-Policy"] = f'"default";q={limit}{w}'
        headers["RateLimit"] = f'"default";r={remaining};t={reset}'
    return headers


def parse_schedule(spec: str) -> tuple[tuple[float, float], ...]:
    """``"30:5,60:20"`` → ``((30.0, 5.0), (60.0, 20.0))`` (ValueError when malformed)."""
    out = []
    for part in spec.split(","):
        since, _, rate = part.partition(":")
        try:
            value = (float(since), float(rate))
        except ValueError:
            value = (-1.0, 0.0)
        if not (value[0] >= 0 and value[1] > 0 and math.isfinite(value[0] + value[1])):
            raise ValueError(f"--rate-schedule: {part.strip()!r} is not SECONDS:LIMIT (like 30:5)")
        out.append(value)
    return tuple(out)
