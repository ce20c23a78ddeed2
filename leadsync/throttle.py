"""The throttle: one request gate for the whole run, shared by every worker (spec §4).

:class:`Governor` makes every decision and is told the time at each call, so its state
machine is tested with a simulated clock; :class:`Throttle` puts it behind a lock for the
worker threads.

Pinned (``--rate``) spaces requests exactly ``1/rate`` apart. Adaptive finds the limit
of whatever server it meets (the Lead API does not document its own):

- **Budget.** When successful answers carry a window's limit and remaining count
  (Laravel's ``X-RateLimit-*``, GitHub's reset epoch, the IETF ``RateLimit`` fields),
  never more requests go out than the window has left, and a spent window waits for its
  reset instead of collecting 429s. A count that does not fall as requests are answered
  is a token bucket refilling, and the budget is dropped.
- **Rate.** Otherwise the rate is found by probing, time-based so that concurrency and
  latency do not change it: slow start doubles it every second until the first 429; a
  429 sets the ceiling to what the server let through since the last one (a token
  bucket is empty at both, so that is its rate whatever its burst) or, in a storm of
  429s, to the share of answers it accepted, and drops to 95% of it; the rate is back at
  the ceiling within 2 s, holds there, then probes above it at +20% a second. The hold
  is short after the ceiling moved and lengthens while the ceiling stays put, so a
  steady server sees few 429s and a changed limit is found again within seconds.
- **Retry-After.** A wait always applies to the request it answered (the sender waits
  before retrying it). It stops every worker only when it is more than a second (a
  window that is spent), when the budget says the window is spent, or when three
  requests in a row sent after a 429 are refused with nothing let through between (a
  window that sends no count): a fast bucket's ``Retry-After: 1`` (rounded up, as
  servers send it) does not stall the run.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from leadsync.config import Config
from leadsync.quota import Quota, asked_wait, read_quota

Clock = Callable[[], float]

BACKOFF = 0.95  # a 429 drops the rate to this share of the ceiling it found
HOLD_MIN = 2.0  # seconds back up to the ceiling after it moved
HOLD_MAX = 12.0  # ... and at most, while it stays put
RAMP = 2.0  # seconds from BACKOFF * ceiling back up to the ceiling
PROBE = 1.2  # growth per second above the ceiling
SHORT_WAIT = 1.0  # a Retry-After up to this is a bucket's rounding, not a spent window
REPEATS = 3  # 429s in a row, nothing between, on requests sent after one that said wait:
# the key is spent (a window that sends no count), not a bucket running a little dry
STABLE = 0.15  # a ceiling within this share of the last one has not moved
STORM = 0.1  # more of the last answers than this refused: the limit fell
EPISODE_MIN = 1.5  # seconds between two decreases to measure the server's rate between
ROSE = 1.3  # the server let through this much more than the ceiling: the limit rose


@dataclass
class ThrottleStats:
    requests: int = 0
    rate_limited: int = 0
    waits_for_retry_after: int = 0  # 429s that said how long to wait
    paused: int = 0  # of them, the ones that stopped every worker
    waited_s: float = 0.0


@dataclass(frozen=True)
class Ticket:
    """One request let through: when, at what rate, and whether it probes a spent budget."""

    sent_at: float
    rate: float
    probe: bool = False


class Governor:
    """Every decision of the throttle, with no clock or lock of its own."""

    def __init__(self, config: Config, now: float = 0.0) -> None:
        self.pinned = config.rate is not None
        self.max_rate = config.rate if config.rate is not None else config.max_rate
        self.rate = (
            config.rate if config.rate is not None else min(config.start_rate, self.max_rate)
        )
        self.min_rate = min(0.2, self.rate)
        self.stats = ThrottleStats()
        self.next_slot = now
        self.pause_until = now
        self.in_flight = 0
        self.peak_in_flight = 0
        self.probe_out = False
        # the rate controller (adaptive)
        self.ceiling: float | None = None
        self.decreased_at = -math.inf
        self.hold = HOLD_MIN
        self.last_growth = now
        self.gated = False  # a request waited for its slot since the rate last grew
        self.answers: deque[bool] = deque(maxlen=40)  # the last answers: was it not a 429?
        self.limited_at = -math.inf  # the last 429 that said how long to wait
        self.limited_until = -math.inf
        self.repeats = 0
        self.ok = 0  # answers other than 429
        self.paused_at = -math.inf
        self.decreased_ok = 0  # self.ok at the last decrease
        # the budget (adaptive, when successful answers carry a window's count)
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.window: float | None = None
        self.window_first_send: float | None = None
        self.new_window = False
        self.refilling = False  # a token bucket: its count refills continuously
        self.unchanged = 0  # answers in a row that did not lower the count
        self.most_remaining = 0

    # the gate --------------------------------------------------------------------

    def wait_needed(self, now: float) -> tuple[float, bool]:
        """Seconds before the next request may go (0: now), and whether it is a probe of
        a spent budget (one request to learn when the window resets)."""
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
                probe = True
        if self.next_slot > now:
            self.gated = True
            return self.next_slot - now, False
        return 0.0, probe

    def send(self, now: float, probe: bool = False) -> Ticket:
        """Let one request through now (after :meth:`wait_needed` said 0)."""
        interval = 1.0 / self.rate
        # small lateness does not accumulate into a slower rate; a long idle gap does not
        # turn into a burst
        self.next_slot = max(self.next_slot, now - 0.2 * interval) + interval
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.probe_out = self.probe_out or probe
        self.stats.requests += 1
        if self.window_first_send is None:
            self.window_first_send = now
        return Ticket(now, self.rate, probe)

    def _budget_spent(self) -> bool:
        if self.pinned or self.refilling or self.remaining is None:
            return False
        return self.remaining - self.in_flight <= 0

    def findings(self) -> dict[str, object] | None:
        """What the run learned of the server's limit, for the summary."""
        if self.pinned:
            return None
        if self.limit is not None and not self.refilling:
            window = round(self.window, 1) if self.window is not None else None
            return {"kind": "window", "limit": self.limit, "window_s": window}
        if self.ceiling is not None:
            return {"kind": "rate", "requests_per_s": round(self.ceiling, 2)}
        return None

    # feedback --------------------------------------------------------------------

    def answered(
        self,
        now: float,
        ticket: Ticket,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        now_epoch: float | None = None,
    ) -> None:
        """Take in how a request went (``status`` None: no answer)."""
        headers = headers or {}
        now_epoch = time.time() if now_epoch is None else now_epoch
        self.in_flight = max(0, self.in_flight - 1)
        if ticket.probe:
            self.probe_out = False
        if status is None:
            return
        self.answers.append(status != 429)
        if status == 429:
            self._limited(now, ticket, asked_wait(headers, now_epoch))
            return
        self.ok += 1
        self.repeats = 0  # the key is not spent: something got through
        if self.pinned:
            return
        quota = read_quota(headers, now_epoch)
        if quota is not None and quota.limit is not None and quota.remaining is not None:
            self._budget_from(quota, now, ticket)
        # an empty count on a refilling server: at its rate now, so hold it there (a
        # bucket of one always shows 0: then the count says nothing)
        at_limit = (
            self.refilling
            and quota is not None
            and quota.remaining is not None
            and quota.remaining <= 0
            and self.most_remaining > 0
        )
        if not at_limit:
            self._grow(now)

    def _limited(self, now: float, ticket: Ticket, wait: float | None) -> None:
        self.stats.rate_limited += 1
        budgeting = self.limit is not None and not self.refilling and not self.pinned
        if wait is not None:
            self.stats.waits_for_retry_after += 1
            if ticket.sent_at >= self.limited_at and now < self.limited_until:
                self.repeats += 1
            else:
                self.repeats = 0
            if budgeting or wait > SHORT_WAIT or self.repeats >= REPEATS or ticket.probe:
                self.stats.paused += 1
                self.pause_until = max(self.pause_until, now + wait)
                self.paused_at = now  # the bucket refills meanwhile: no count across it
            if budgeting or ticket.probe:
                self.reset_at = now + wait
                if self.window_first_send is not None:
                    # an upper bound: Retry-After is rounded up, and the window started
                    # no earlier than our first request in it
                    self.window = max(self.window or 0.0, self.reset_at - self.window_first_send)
                self.remaining = 0
            if now >= self.limited_until:
                self.limited_at = now  # a new run of 429s: later sends are measured from it
            self.limited_until = max(self.limited_until, now + wait)
        if not self.pinned and not ticket.probe and ticket.sent_at >= self.decreased_at:
            self._decrease(now, ticket)

    def _decrease(self, now: float, ticket: Ticket) -> None:
        found = self._server_rate(now, ticket.rate)
        if self.ceiling is not None and abs(found - self.ceiling) <= STABLE * self.ceiling:
            self.hold = min(HOLD_MAX, self.hold * 1.5)
        else:
            self.hold = HOLD_MIN
        self.ceiling = found
        self.rate = max(self.min_rate, BACKOFF * found)
        self.decreased_at = now
        self.last_growth = now
        self.gated = False
        self.decreased_ok = self.ok

    def _server_rate(self, now: float, sent_rate: float) -> float:
        """The rate the server allows us, as a 429 sent at ``sent_rate`` shows it."""
        # Sending at r to a server that allows L < r, a share (r - L) / r is refused
        refused = sum(1 for ok in self.answers if not ok) / len(self.answers)
        storm = sent_rate * (1 - refused) if refused > STORM else None
        span = now - self.decreased_at
        if self.ceiling is None:
            found = storm or sent_rate  # the end of slow start
        elif span < EPISODE_MIN or self.paused_at >= self.decreased_at:
            # another 429 just after one (the bucket had not refilled yet), or across a
            # pause: no new measure, so the ceiling stands unless this is a storm
            found = storm or self.ceiling
        else:
            # A token bucket is empty at every first 429: between two of them it let
            # through its rate times the time, less what overflowed while we sent below
            # it, however big its burst (which lets the rate run past the limit for
            # seconds before the first 429)
            between = (self.ok - self.decreased_ok) / span
            # unless the limit rose: then the count is only a floor (the bucket overflowed
            # while we sent at the old limit), and what this request went out at says more
            rose = between > ROSE * self.ceiling
            found = max(between, storm or sent_rate) if rose else between
        return min(sent_rate, max(found, sent_rate / 2))

    def _grow(self, now: float) -> None:
        dt = now - self.last_growth
        self.last_growth = now
        if not self.gated or dt <= 0:
            return  # the rate did not hold anything back: it has not been tried
        self.gated = False
        if self.ceiling is None:
            rate = self.rate * 2.0**dt  # slow start
        else:
            t = now - self.decreased_at
            if t < self.hold:
                # back up to the ceiling quickly, then hold there: a slow climb below it
                # would fill a big bucket's burst, which the next probe must then drain
                # (overshooting the limit further the more it holds)
                rate = self.ceiling * (BACKOFF + (1 - BACKOFF) * min(1.0, t / RAMP))
            else:
                rate = max(self.rate, self.ceiling) * PROBE**dt
        self.rate = max(self.min_rate, min(self.max_rate, rate))

    def _budget_from(self, quota: Quota, now: float, ticket: Ticket) -> None:
        assert quota.limit is not None and quota.remaining is not None
        limit, remaining = quota.limit, quota.remaining
        if (
            ticket.probe
            and self.remaining is not None
            and self.remaining <= 0
            and self.reset_at is None
        ):
            # a request went through with the budget spent: the server refills as it goes
            self.refilling = True
        self.limit = limit
        self.most_remaining = max(self.most_remaining, remaining)
        if quota.window is not None:
            self.window = quota.window
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
            # the count went up by more than answers arriving out of order explain: the
            # server's window turned over, and it started no earlier than this request
            self.remaining = remaining
            self.window_first_send = ticket.sent_at
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
        if quota.reset_in is not None:
            self.reset_at = now + quota.reset_in  # read_quota capped it already


class Throttle:
    """The run's :class:`Governor` behind a lock, for the worker threads."""

    def __init__(
        self, config: Config, clock: Clock = time.monotonic, wall: Clock = time.time
    ) -> None:
        self.clock, self.wall = clock, wall
        self.cond = threading.Condition()
        self.governor = Governor(config, clock())

    @property
    def stats(self) -> ThrottleStats:
        return self.governor.stats

    def acquire(self, stop: threading.Event) -> Ticket | None:
        """Block until a request may go out; its ticket, or None if the run stopped."""
        with self.cond:
            while True:
                if stop.is_set():
                    return None
                now = self.clock()
                wait, probe = self.governor.wait_needed(now)
                if wait <= 0:
                    return self.governor.send(now, probe)
                self.governor.stats.waited_s += min(wait, 0.25)
                self.cond.wait(min(wait, 0.25))

    def release(
        self, ticket: Ticket, status: int | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Report how a request went (``status`` None: no answer)."""
        with self.cond:
            self.governor.answered(self.clock(), ticket, status, headers, self.wall())
            self.cond.notify_all()
