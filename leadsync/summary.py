"""The run summary: what summary.json holds, what ``--json`` prints, and the few lines
a person reads after a run."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadsync import __version__
from leadsync.config import Config
from leadsync.errors import ExitCode, shown
from leadsync.fields import FIELD_KEYS, FIELDS_BY_NAME, normalise_header
from leadsync.model import OUTCOMES, ColumnPlan, Outcome

if TYPE_CHECKING:
    from leadsync.reader import Table
    from leadsync.sender import RowSender
    from leadsync.throttle import Throttle


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read into one reused buffer (it runs beside the checks: no
    block of the file is allocated while they run)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def build_summary(
    command: str,
    run_id: str,
    table: Table,
    plan: ColumnPlan,
    counts: Counter[str],
    codes: Counter[str],
    started: dt.datetime,
    clock: float,
    exit_code: ExitCode,
    *,
    reports: dict[str, str],
    config: Config,
    extra: dict[str, Any] | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """The run summary: what summary.json holds and what ``--json`` prints."""
    elapsed = time.perf_counter() - clock
    rows = sum(counts.values())
    summary: dict[str, Any] = {
        "leadsync_version": __version__,
        "command": command,
        "run_id": run_id,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 else None,
        "file": {
            "path": str(table.path),
            "name": table.path.name,
            "format": table.format,
            "sheet": table.sheet,
            "encoding": table.encoding,
            "delimiter": table.delimiter,
            "size_bytes": table.path.stat().st_size,
            "sha256": sha256 or file_sha256(table.path),
        },
        "mapping": config.mapping_path,
        "rows": rows,
        "outcomes": {o: counts.get(o, 0) for o in OUTCOMES},
        "problems_by_code": dict(codes.most_common()),
        "unmapped_columns": [shown(h) for h in plan.unmapped],
        "notices": [shown(n, 2000) for n in table.notices],
        "exit_code": int(exit_code),
        "reports": reports,
    }
    if extra:
        summary.update(extra)
    return summary


def _create_only(header: str) -> bool:
    fname = FIELD_KEYS.get(normalise_header(header))
    return fname is not None and FIELDS_BY_NAME[fname].create_only


_LISTED = 12  # unmapped columns named in the summary; summary.json has them all


def format_summary(summary: dict[str, Any]) -> str:
    """The human summary printed after a run."""
    file = summary["file"]
    where = file["name"] + (f" (sheet {file['sheet']!r})" if file.get("sheet") else "")
    rows = f"{summary['rows']} row{'' if summary['rows'] == 1 else 's'}"
    lines = [f"{summary['command']}: {where}: {rows} in {summary['duration_s']:.1f} s"]
    # as wide as the longest outcome shown, and never narrower than a sync's own
    # ("not_attempted"): the figures stay where scripts and eyes expect them
    shown = [k for k, n in summary["outcomes"].items() if n]
    width = max([len(Outcome.NOT_ATTEMPTED.value), *map(len, shown)])
    for outcome, n in summary["outcomes"].items():
        if n:
            lines.append(f"  {outcome:<{width}}  {n:>8}")
    codes = summary.get("problems_by_code") or {}
    if codes:
        lines.append("problems: " + ", ".join(f"{code} {n}" for code, n in codes.items()))
    unmapped = summary.get("unmapped_columns") or []
    if unmapped:
        cols = ", ".join(repr(c) for c in unmapped[:_LISTED])
        if len(unmapped) > _LISTED:  # a wide export must not bury the rest of the summary
            cols += f" and {len(unmapped) - _LISTED} more (all in summary.json)"
        lines.append(f"columns not sent (unmapped; map or 'ignore' them in a mapping file): {cols}")
        new_only = [c for c in unmapped if _create_only(c)]
        if new_only:
            names = ", ".join(repr(c) for c in new_only[:_LISTED])
            lines.append(f"  {names}: sent only when a lead is created (sync --create)")
    sending = summary.get("sending")
    if sending:
        lines.append(
            f"sent {sending['requests']} request{'' if sending['requests'] == 1 else 's'} to "
            f"{sending['base_url']} in "
            f"{sending['duration_s']:.1f} s ({sending['achieved_rate'] or 0:.1f}/s, "
            f"{sending['mode']}), {sending['retries']} retries, "
            f"{sending['rate_limited_429']} answered 429"
        )
    if summary.get("aborted"):
        lines.append(f"ABORTED: {summary['aborted']}")
    reports = summary.get("reports") or {}
    if reports:
        folder = Path(next(iter(reports.values()))).parent
        names = ", ".join(Path(p).name for p in reports.values())
        lines.append(f"reports: {folder}/ ({names})")
    return "\n".join(lines)


def request_figures(throttle: Throttle, senders: list[RowSender]) -> dict[str, int]:
    """Requests, retries and 429s so far: the summary's, and a live display's."""
    return {
        "requests": throttle.stats.requests,
        "retries": sum(s.retries for s in list(senders)),  # a copy: workers may add one
        "rate_limited_429": throttle.stats.rate_limited,
    }


def sending_figures(
    config: Config,
    base_url: str,
    throttle: Throttle,
    senders: list[RowSender],
    send_s: float,
    requests_before: int = 0,
) -> dict[str, Any]:
    """The summary's ``sending`` section: requests, retries, 429s, the limit found, the
    rate achieved (over the sending alone: the checks and lookups before it had their
    own time)."""
    stats = throttle.stats
    sent = stats.requests - requests_before
    mode = f"pinned {config.rate:g}/s" if config.rate else f"adaptive (max {config.max_rate:g}/s)"
    return {
        "base_url": base_url,
        "mode": mode,
        "concurrency": config.concurrency,
        **request_figures(throttle, senders),
        "waited_for_retry_after": stats.waits_for_retry_after,
        "paused_for_retry_after": stats.paused,
        "server_limit": throttle.governor.findings(),
        "duration_s": round(send_s, 3),
        "achieved_rate": round(sent / send_s, 2) if send_s > 0 else None,
    }
