"""Exit codes and the exceptions that carry them to the CLI's one error boundary."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (spec §7)."""

    OK = 0  # every row fine
    ROWS_FAILED = 1  # some rows invalid, rejected, failed or unknown
    USAGE = 2  # usage error or unreadable input
    ABORTED = 3  # run aborted: auth, circuit breaker, guard, lock held, signal
    INTERNAL = 70  # EX_SOFTWARE: a bug in leadsync, not in the input


class LeadsyncError(Exception):
    """A problem the user can fix; the CLI prints ``str(self)`` as one line."""

    exit_code: ExitCode = ExitCode.USAGE


class InputError(LeadsyncError):
    """The input file cannot be read as a table of leads."""


class MappingError(LeadsyncError):
    """The mapping file (or a setting) is invalid."""


class AbortError(LeadsyncError):
    """The run had to stop before every row was attempted."""

    exit_code = ExitCode.ABORTED


SHOWN_CHARS = 200  # how much of a user's value a message, a log line or the summary quotes


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters for a message or the summary (a 300 MB header
    must not be echoed whole), saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"
