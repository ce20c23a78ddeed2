"""The throttle: one request gate for the whole run, shared by every worker (spec §4).

Pinned (``--rate``) or adaptive: start low, follow ``X-RateLimit-*``, halve on 429,
honour ``Retry-After``, creep up while all is well, never above ``--max-rate``.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from leadsync.config import Config
from leadsync.defaults import MAX_WAIT

Clock = Callable[[], float]


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


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw[:100])
    except ValueError:
        return None
    if not math.isfinite(value) or abs(value) > 1e15:
        return None  # inf, nan or absurd: as if the header were not there
    return int(value)


@dataclass
class ThrottleStats:
    requests: int = 0
    rate_limited: int = 0
    waits_for_retry_after: int = 0
    waited_s: float = 0.0


class Throttle:
    """One request gate for the whole run, shared by every worker.

    Pinned mode spaces requests exactly ``1/rate`` apart. Adaptive mode runs an AIMD
    rate (slow start, halve on 429, fast recovery towards the rate that last hit a 429,
    then a slow creep) and, when the server sends ``X-RateLimit-Limit``/``-Remaining``,
    also keeps a budget: it never has more requests out than the window has left, and
    once the window is spent it waits for the reset it learned from the first
    ``Retry-After`` instead of probing again.
    """

    def __init__(self, config: Config, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.pinned = config.rate is not None
        self.max_rate = config.rate if config.rate is not None else config.max_rate
        self.rate = (
            config.rate if config.rate is not None else min(config.start_rate, self.max_rate)
        )
        self.min_rate = min(0.2, self.rate)
        self.cond = threading.Condition()
        self.next_slot = 0.0
        self.pause_until = 0.0
        self.ceiling: float | None = None
        self.last_decrease = -1.0
        self.in_flight = 0
        self.stats = ThrottleStats()
        # header budget (adaptive only)
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.window: float | None = None
        self.window_first_send: float | None = None
        self.new_window = False
        self.refilling = False  # a token bucket: its budget refills continuously
        self.unchanged = 0  # answers in a row that did not lower the remaining budget
        self.most_remaining = 0  # the largest X-RateLimit-Remaining seen
        self.peak_in_flight = 0
        self.probe_out = False

    # the gate ------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> float | None:
        """Block until a request may go out; return its send time, or None if stopped."""
        with self.cond:
            while True:
                if stop.is_set():
                    return None
                now = self.clock()
                wait, probe = self._wait_needed(now)
                if wait <= 0:
                    interval = 1.0 / self.rate
                    # small lateness does not accumulate into a slower rate; a long idle
                    # gap does not turn into a burst
                    self.next_slot = max(self.next_slot, now - 0.2 * interval) + interval
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    self.probe_out = self.probe_out or probe
                    self.stats.requests += 1
                    if self.window_first_send is None:
                        self.window_first_send = now
                    return now
                self.stats.waited_s += min(wait, 0.25)
                self.cond.wait(min(wait, 0.25))

    def _wait_needed(self, now: float) -> tuple[float, bool]:
        """Seconds to wait before the next request, and whether it is a budget probe."""
        if now < self.pause_until:
            return self.pause_until - now, False
        probe = False
        if self._budget_spent():
            if self.reset_at is not None:
                if now < self.reset_at:
                    return self.reset_at - now, False
                # the window has turned over: a fresh budget, learned again from headers
                self.remaining = self.limit
                self.reset_at = None
                self.new_window = True
                self.window_first_send = None
            elif self.in_flight > 0 or self.probe_out:
                return 0.05, False  # wait for an answer before deciding
            else:
                probe = True  # one request to learn when the window resets
        slot = self.next_slot
        return (slot - now if slot > now else 0.0), probe

    def _budget_spent(self) -> bool:
        if self.pinned or self.refilling or self.remaining is None:
            return False
        return self.remaining - self.in_flight <= 0

    # feedback --------------------------------------------------------------------

    def release(
        self, sent_at: float, status: int | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Report how a request went (``status`` None: no answer)."""
        headers = headers or {}
        with self.cond:
            now = self.clock()
            self.in_flight = max(0, self.in_flight - 1)
            was_probe = self.probe_out
            self.probe_out = False
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            limit = _int_header(headers, "X-RateLimit-Limit")
            remaining = _int_header(headers, "X-RateLimit-Remaining")
            reset_epoch = _int_header(headers, "X-RateLimit-Reset")
            if status == 429:
                self.stats.rate_limited += 1
                wait = retry_after
                if wait is None and reset_epoch is not None:
                    wait = capped_wait(reset_epoch - time.time())
                if wait is not None:
                    self.stats.waits_for_retry_after += 1
                    self.pause_until = max(self.pause_until, now + wait)
                    if not self.refilling:
                        self.reset_at = now + wait
                        if self.window_first_send is not None:
                            # an upper bound: Retry-After is rounded up, the window
                            # started no earlier than our first request in it
                            self.window = max(
                                self.window or 0.0, self.reset_at - self.window_first_send
                            )
                        self.remaining = 0
                if not self.pinned and sent_at >= self.last_decrease:
                    self.ceiling = self.rate
                    self.rate = max(self.min_rate, self.rate / 2)
                    self.last_decrease = now
            elif status is not None:
                if limit is not None and remaining is not None and not self.pinned:
                    self._budget_from_headers(
                        limit, remaining, reset_epoch, now, was_probe, sent_at
                    )
                # an empty budget on a refilling server: at its rate now, so hold it there
                # (a bucket of one always shows 0: then the header says nothing)
                at_limit = (
                    self.refilling
                    and remaining is not None
                    and remaining <= 0
                    and self.most_remaining > 0
                )
                if not self.pinned and not at_limit:
                    self._grow()
            self.cond.notify_all()

    def _budget_from_headers(
        self,
        limit: int,
        remaining: int,
        reset_epoch: int | None,
        now: float,
        was_probe: bool,
        sent_at: float,
    ) -> None:
        if (
            was_probe
            and self.remaining is not None
            and self.remaining <= 0
            and self.reset_at is None
        ):
            # a request went through with the budget spent: the server refills as it goes
            self.refilling = True
        self.limit = limit
        self.most_remaining = max(self.most_remaining, remaining)
        if self.new_window and remaining < limit - 2 - self.peak_in_flight:
            # a window that has just turned over starts nearly full; this one did not:
            # the "window" was a token bucket's refill, so stop budgeting
            self.refilling = True
        if self.new_window or self.remaining is None:
            self.remaining = remaining
            if self.new_window and self.window is not None:
                self.reset_at = now + self.window
            self.new_window = False
        elif remaining > self.remaining + self.in_flight + 1:
            # the budget went up by more than answers arriving out of order explain: the
            # server's window turned over, and it started no earlier than this request
            self.remaining = remaining
            self.window_first_send = sent_at
            if self.window is not None:
                self.reset_at = now + self.window
        elif remaining < self.remaining:
            self.remaining = remaining
            self.unchanged = 0
        else:
            # A fixed window's count only goes down: after more answers than could have
            # been in flight together, one must show a lower count. If none does, the
            # server refills its budget continuously (a token bucket): stop budgeting.
            self.unchanged += 1
            if self.unchanged > self.peak_in_flight + 1:
                self.refilling = True
        if reset_epoch is not None:
            self.reset_at = now + capped_wait(reset_epoch - time.time())

    def _grow(self) -> None:
        r = self.rate
        if self.ceiling is None:
            r += 1.0  # slow start: +1 per answer doubles the rate every second
        elif r < 0.9 * self.ceiling:
            r += max(0.5, 0.1 * self.ceiling / max(r, 1.0))  # fast recovery
        else:
            r += 0.02 * self.ceiling / max(r, 1.0)  # creep: +2% of the ceiling a second
            if r > 1.25 * self.ceiling:
                self.ceiling = r  # the server allows more than it did
        self.rate = min(self.max_rate, r)
