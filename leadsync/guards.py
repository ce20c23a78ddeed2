"""Guards: the rules that stop a sync before it does harm (spec §4).

Each guard is one object. :meth:`Guard.before` is asked once before anything is sent —
the run-size guards (``early``) before the offices check and the lookups, the others
after them —; :meth:`Guard.judge` after every row that ends, in the worker that sent it
and under the engine's lock, before that worker takes another row (so a guard that trips
stops the very next send). Each returns why the run must stop, or None. A new guard is one
new class here and one line in :func:`guards_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from leadsync.config import Config
from leadsync.model import Code, Outcome, SendResult

MIN_SAMPLE = 10  # rows sent before --max-failure-rate may judge the run


@dataclass(frozen=True)
class Facts:
    """What the guards may ask about a run before it sends anything (the counts that
    need a pass over the file are computed when a guard asks)."""

    rows: int  # data rows in the file
    invalid: Callable[[], int]  # rows the validator refuses
    changes: Callable[[], int]  # leads the run would change (or create)
    last_rows: Callable[[], int | None]  # rows of the job's last finished run (None: none)


class Guard:
    """A rule that can stop a run; by default it never does."""

    early = False  # judged before the offices check and the lookups

    def before(self, facts: Facts) -> str | None:
        """Why nothing may be sent."""
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

    def before(self, facts: Facts) -> str | None:
        n = facts.changes()
        if n > self.limit:
            return (
                f"--max-changes {self.limit}: this file would change {n} "
                "leads; nothing was sent (raise the limit if that is expected)"
            )
        return None


class MinRows(Guard):
    """``--min-rows N``: an export cut short upstream (or a header-only file)."""

    early = True

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def before(self, facts: Facts) -> str | None:
        if facts.rows < self.limit:
            return (
                f"--min-rows {self.limit}: the file has {_rows(facts.rows)}; nothing was "
                "sent (was the export cut short?)"
            )
        return None


class MaxShrink(Guard):
    """``--max-shrink P``: fewer than P% of the rows of the job's last finished run."""

    early = True

    def __init__(self, percent: float) -> None:
        self.percent = percent

    def before(self, facts: Facts) -> str | None:
        last = facts.last_rows()
        if last and facts.rows < last * self.percent / 100:
            return (
                f"--max-shrink {self.percent:g}: the file has {_rows(facts.rows)}, under "
                f"{self.percent:g}% of the {_rows(last)} of the last run of this job; nothing "
                "was sent (was the export cut short?)"
            )
        return None


class MaxInvalidRate(Guard):
    """``--max-invalid-rate P``: so many invalid rows that the export is surely wrong."""

    early = True

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def before(self, facts: Facts) -> str | None:
        if not facts.rows:
            return None
        invalid = facts.invalid()
        if invalid / facts.rows > self.limit:
            return (
                f"--max-invalid-rate {self.limit:g}: {invalid} of the {_rows(facts.rows)} are "
                "invalid; nothing was sent (a wrong export? see failures.csv)"
            )
        return None


def judge_all(guards: list[Guard], result: SendResult) -> str | None:
    """Every guard sees ``result`` (each keeps its own count); the first objection."""
    objections = [guard.judge(result) for guard in guards]
    return next((why for why in objections if why), None)


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def guards_for(config: Config) -> list[Guard]:
    """The guards a sync with ``config`` runs under."""
    guards: list[Guard] = [RefusedKey(), CircuitBreaker(config.breaker_threshold)]
    if config.min_rows is not None:
        guards.append(MinRows(config.min_rows))
    if config.max_shrink is not None:
        guards.append(MaxShrink(config.max_shrink))
    if config.max_invalid_rate is not None:
        guards.append(MaxInvalidRate(config.max_invalid_rate))
    if config.max_failure_rate is not None:
        guards.append(FailureRate(config.max_failure_rate))
    if config.max_changes is not None:
        guards.append(MaxChanges(config.max_changes))
    return guards
