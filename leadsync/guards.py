"""Guards: the rules that stop a sync before it does harm (spec §4).

Each guard is one object. :meth:`Guard.before` is asked once, after the lookups and before
anything is sent; :meth:`Guard.judge` after every row that ends, in the worker that sent it
and under the engine's lock, before that worker takes another row (so a guard that trips
stops the very next send). Each returns why the run must stop, or None. A new guard is one
new class here and one line in :func:`guards_for`.
"""

from __future__ import annotations

from collections.abc import Callable

from leadsync.config import Config
from leadsync.model import Code, Outcome, SendResult

MIN_SAMPLE = 10  # rows sent before --max-failure-rate may judge the run


class Guard:
    """A rule that can stop a run; by default it never does."""

    def before(self, changes: Callable[[], int]) -> str | None:
        """Why nothing may be sent. ``changes()`` counts the leads the run would change."""
        return None

    def judge(self, result: SendResult) -> str | None:
        """Why the run must stop now that ``result`` is in."""
        return None


class RefusedKey(Guard):
    """401/403: a wrong key must not burn through the file."""

    def judge(self, result: SendResult) -> str | None:
        return result.abort


class CircuitBreaker(Guard):
    """So many rows in a row failed outright that the API is surely down."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.in_a_row = 0

    def judge(self, result: SendResult) -> str | None:
        if result.outcome == Outcome.FAILED and result.code != Code.AUTH:
            self.in_a_row += 1
            if self.in_a_row >= self.threshold:
                return (
                    f"circuit breaker: {self.in_a_row} rows in a row failed "
                    f"(last: {result.message})"
                )
        elif result.outcome in (
            Outcome.UPDATED,
            Outcome.CREATED,
            Outcome.REJECTED,
            Outcome.UNKNOWN,
        ):
            self.in_a_row = 0
        return None


class FailureRate(Guard):
    """``--max-failure-rate P``: more than P of the rows sent did not succeed."""

    def __init__(self, limit: float, min_sample: int = MIN_SAMPLE) -> None:
        self.limit, self.min_sample = limit, min_sample
        self.sent = self.failures = 0

    def judge(self, result: SendResult) -> str | None:
        if not result.outcome.was_sent:
            return None
        self.sent += 1
        self.failures += result.outcome.is_failure
        if self.sent >= self.min_sample and self.failures / self.sent > self.limit:
            return (
                f"--max-failure-rate {self.limit:g}: {self.failures} of the "
                f"first {self.sent} rows sent failed"
            )
        return None


class MaxChanges(Guard):
    """``--max-changes N``: the file would change more leads than expected."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def before(self, changes: Callable[[], int]) -> str | None:
        n = changes()
        if n > self.limit:
            return (
                f"--max-changes {self.limit}: this file would change {n} "
                "leads; nothing was sent (raise the limit if that is expected)"
            )
        return None


def guards_for(config: Config) -> list[Guard]:
    """The guards a sync with ``config`` runs under."""
    guards: list[Guard] = [RefusedKey(), CircuitBreaker(config.breaker_threshold)]
    if config.max_failure_rate is not None:
        guards.append(FailureRate(config.max_failure_rate))
    if config.max_changes is not None:
        guards.append(MaxChanges(config.max_changes))
    return guards
