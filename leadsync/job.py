"""Job files: everything a nightly run needs in one reviewable TOML file (issue 16).

A job file is a mapping file (``[columns]``, ``[values]``, ``[sending]``, ``[guards]``,
``[notify]`` ...) with a ``[run]`` section that says what to run::

    [run]
    name = "nightly"                       # the job: --max-shrink compares its runs
    input = "/srv/exports/leads.xlsx"
    mapping = "mapping.toml"               # or the mapping sections in this file
    journal = "/var/lib/leadsync/journal.sqlite"
    report_dir = "/var/lib/leadsync/reports"   # each run gets <report_dir>/<run id>/
    keep_runs = "90d"

Relative paths are relative to the job file. ``leadsync sync --job nightly.toml``; a flag
given beside it overrides the file. The API key never goes in it: it comes from the
environment or ``--api-key-file`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from leadsync.config import Config, parse_duration, parse_mapping, read_toml
from leadsync.errors import MappingError

_RUN_KEYS = {
    "name",
    "input",
    "mapping",
    "journal",
    "report_dir",
    "sheet",
    "keep_runs",
    "create",
    "match_by",
    "write_ids",
    "full",
    "snapshot",
}
_PATHS = ("input", "mapping", "journal", "report_dir", "write_ids")
_MAPPING_ONLY = {"columns", "values", "defaults", "dates", "rules"}


@dataclass(frozen=True)
class Job:
    """A job file read: the run's settings, and where its files are."""

    path: Path
    config: Config
    input: Path | None = None
    journal: Path | None = None
    report_root: Path | None = None  # each run's reports go in a folder of their own here
    write_ids: Path | None = None
    full: bool = False


def load_job(path: str | Path) -> Job:
    """Read a job file, or raise :class:`MappingError` saying what to fix."""
    p = Path(path)
    data = read_toml(p, "job file")
    run = data.pop("run", None)
    if not isinstance(run, dict):
        raise MappingError(f"job file {p}: it needs a [run] section (input = ..., name = ...)")
    unknown = set(run) - _RUN_KEYS
    if unknown:
        raise MappingError(
            f"job file {p}: unknown key(s) {', '.join(sorted(unknown))} in [run]; expected "
            f"{', '.join(sorted(_RUN_KEYS))}"
        )
    if "api_key" in run or "api_key" in data.get("sending", {}):
        raise MappingError(f"job file {p}: the API key never goes in a file others review")
    for key in _PATHS:
        if key in run and not isinstance(run[key], str):
            raise MappingError(f"job file {p}: [run] {key} must be a path (text)")
    paths = {k: _relative(p, run[k]) for k in _PATHS if k in run}
    source = str(p)
    if "mapping" in paths:
        if _MAPPING_ONLY & set(data):
            raise MappingError(
                f"job file {p}: it names a mapping file and has mapping sections "
                f"({', '.join(sorted(_MAPPING_ONLY & set(data)))}) too: keep one"
            )
        base = read_toml(paths["mapping"], "mapping file")
        for section, table in data.items():  # the job's [sending], [guards] ... win
            merged = dict(base.get(section) or {})
            merged.update(table if isinstance(table, dict) else {})
            base[section] = merged
        data, source = base, str(paths["mapping"])
    try:
        config = parse_mapping(data, source=source)
    except MappingError as exc:
        raise MappingError(f"job file {p}: {exc}") from None
    config = replace(config, **_run_settings(p, run))
    return Job(
        p,
        config,
        input=paths.get("input"),
        journal=paths.get("journal"),
        report_root=paths.get("report_dir"),
        write_ids=paths.get("write_ids"),
        full=bool(run.get("full", False)),
    )


def _run_settings(p: Path, run: Mapping[str, Any]) -> dict[str, Any]:
    """The [run] keys that are Config fields."""
    out: dict[str, Any] = {"job_name": str(run.get("name") or p.stem)}
    if "keep_runs" in run:
        if not isinstance(run["keep_runs"], str):
            raise MappingError(f'job file {p}: [run] keep_runs must be a duration like "90d"')
        out["keep_runs"] = parse_duration(run["keep_runs"])
    for key, kind in (
        ("sheet", str),
        ("create", bool),
        ("match_by", str),
        ("full", bool),
        ("snapshot", bool),
    ):
        if key in run and not isinstance(run[key], kind):
            raise MappingError(f"job file {p}: [run] {key} has the wrong type")
    out.update({key: run[key] for key in ("sheet", "create", "snapshot") if key in run})
    if "match_by" in run:
        if run["match_by"] not in ("email", "phone"):
            raise MappingError(f"job file {p}: [run] match_by must be email or phone")
        out["match_by"] = run["match_by"]
    return out


def _relative(job: Path, value: str) -> Path:
    given = Path(value).expanduser()
    return given if given.is_absolute() else job.parent / given
