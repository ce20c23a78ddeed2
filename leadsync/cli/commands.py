"""The commands that read a file or the journal and talk to the API: validate, sync,
plan, runs, offices. Each parses its options, calls the library, prints, and returns the
exit code."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from leadsync import defaults
from leadsync.cli.common import (
    base_url_option,
    create_option,
    echo_json,
    journal_option,
    journal_path,
    json_option,
    key_file_option,
    log,
    mapping_option,
    match_by_option,
    print_result,
    read_key,
    remember_json,
    report_dir_option,
    sheet_option,
    signals_stop,
)
from leadsync.errors import ExitCode, LeadsyncError


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@mapping_option
@sheet_option
@report_dir_option
@match_by_option
@create_option
@click.option(
    "--check-offices",
    is_flag=True,
    help="Also check office_id against the account's offices (one GET /offices; needs the key).",
)
@key_file_option
@base_url_option
@json_option
@click.pass_context
def validate(
    ctx: click.Context,
    file: Path,
    mapping: Path | None,
    sheet: str | None,
    report_dir: Path | None,
    match_by: str | None,
    create: bool | None,
    check_offices: bool,
    api_key_file: Path | None,
    base_url: str | None,
    as_json: bool,
) -> int:
    """Check every row of FILE against the Lead API's rules; send nothing.

    Writes failures.csv, successes.csv, summary.json and report.xlsx (your own
    rows with the bad cells in red and a comment on each). With --match-by, rows
    without an id need an email (or phone); the leads are looked up only by sync.

    \b
    Example:
      leadsync validate sample_data/leads.xlsx --report-dir checked/
    """
    from leadsync.api import validate as run_validate
    from leadsync.config import build_config

    config = build_config(
        mapping, os.environ, sheet=sheet, base_url=base_url, match_by=match_by, create=create
    )
    office_ids = None
    if check_offices:
        office_ids = {o for o, _ in _offices(ctx, config, api_key_file) if isinstance(o, int)}
    result = run_validate(file, config, report_dir, office_ids=office_ids)
    print_result(result, as_json)
    return int(result.exit_code)


def _offices(ctx: click.Context, config: Any, api_key_file: Path | None) -> Any:
    from leadsync.api import list_offices

    return list_offices(config, read_key(ctx, api_key_file))


@click.command()
@key_file_option
@base_url_option
@json_option
@click.pass_context
def offices(
    ctx: click.Context, api_key_file: Path | None, base_url: str | None, as_json: bool
) -> int:
    """List the account's offices (the ids office_id may take).

    \b
    Example:
      leadsync offices
      leadsync offices --json > offices.json
    """
    from leadsync.config import build_config

    config = build_config(None, os.environ, base_url=base_url)
    found = _offices(ctx, config, api_key_file)
    if as_json:
        echo_json([{"id": o, "name": n} for o, n in found])
        return 0
    width = max((len(str(o)) for o, _ in found), default=2)
    click.echo(f"{'id':>{width}}  name")
    for oid, name in found:
        click.echo(f"{oid!s:>{width}}  {name}")
    return 0


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--live",
    is_flag=True,
    help="Compare with the leads as they are now (GET /leads/<id>, throttled) instead of "
    "the journal's last confirmed values.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    callback=remember_json,
    help="Output format.",
)
@create_option
@journal_option
@key_file_option
@base_url_option
@mapping_option
@sheet_option
@click.pass_context
def plan(
    ctx: click.Context,
    file: Path,
    live: bool,
    fmt: str,
    create: bool | None,
    journal: Path | None,
    api_key_file: Path | None,
    base_url: str | None,
    mapping: Path | None,
    sheet: str | None,
) -> int:
    """Show, per lead, the fields a sync of FILE would change: old -> new. Sends nothing.

    Old values are the journal's last confirmed ones ("(not known)" for a lead never
    synced), or the live lead with --live. Invalid rows are left out, as a sync would
    leave them: a note counts them (exit 1), and validate says why.

    \b
    Example:
      leadsync plan leads.xlsx
      leadsync plan leads.xlsx --live --format csv > changes.csv
    """
    import csv as csv_module

    from leadsync.api import plan as run_plan
    from leadsync.config import build_config
    from leadsync.planner import NEW_LEAD

    config = build_config(mapping, os.environ, sheet=sheet, base_url=base_url, create=create)
    key = None
    if live:
        key = read_key(ctx, api_key_file)
    invalid: list[int] = []
    changes = run_plan(
        file, config, journal=journal_path(journal), api_key=key, live=live, left_out=invalid
    )
    if fmt == "json":
        items = [c.__dict__ for c in changes]
        echo_json(items)
    elif fmt == "csv":
        writer = csv_module.writer(sys.stdout)
        writer.writerow(["row", "lead_id", "field", "old", "new"])
        for c in changes:
            writer.writerow([c.row, c.lead_id, c.field, _show(c.old), _show(c.new)])
    else:
        count = leads = 0
        last: tuple[int, str] | None = None
        for c in changes:
            if (c.row, c.lead_id) != last:
                what = "a new lead" if c.lead_id == NEW_LEAD else f"lead {c.lead_id}"
                click.echo(f"row {c.row}  {what}")
                last = (c.row, c.lead_id)
                leads += 1
            click.echo(f"    {c.field}: {_show(c.old)} -> {_show(c.new)}")
            count += 1
        click.echo(f"{count} change(s) to {leads} lead(s)" if count else "nothing would change")
    if invalid:  # on stderr: csv and json output stay machine-readable
        rows = ", ".join(map(str, invalid[:10])) + (" ..." if len(invalid) > 10 else "")
        log(
            "note",
            f"{len(invalid)} invalid row(s) left out, as a sync would leave them (row"
            f"{'s' if len(invalid) > 1 else ''} {rows}): `leadsync validate {file}` says why",
        )
        return int(ExitCode.ROWS_FAILED)
    return 0


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@click.command()
@journal_option
@click.option(
    "--show", "show", metavar="RUN", help="List the rows of run RUN that did not succeed."
)
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs to list.")
@json_option
def runs(journal: Path | None, show: str | None, limit: int, as_json: bool) -> int:
    """List past sync runs from the journal, newest first, with their counts.

    \b
    Example:
      leadsync runs
      leadsync runs --show last              # what went wrong in the last run
      leadsync sync leads.xlsx --retry-failed last
    """
    from leadsync.journal import Journal

    path = journal_path(journal)
    if not path.exists():
        raise LeadsyncError(f"no journal at {path} yet: it is created by the first sync")
    from leadsync.revert import plan_revert, revertible

    with Journal(path) as book:
        if show:
            found = book.find_run(show)
            problems = book.run_problems(found["run_id"])
            lookups = book.failed_lookups(found["run_id"])
            if as_json:
                shown = {"run": found, "rows": problems, "lookups_failed": lookups}
                echo_json(shown)
                return 0
            click.echo(
                f"run {found['run_id']} ({found['status']}, exit {found['exit_code']}): "
                f"{found['file']}"
            )
            if found.get("aborted"):
                click.echo(f"aborted: {found['aborted']}")
            for p in problems:
                status = f" HTTP {p['http_status']}" if p["http_status"] else ""
                click.echo(
                    f"  row {p['row']:>6}  lead {p['lead_id']:<12} {p['state']:<13}"
                    f"{status} {p['message'] or ''}"
                )
            if lookups:
                click.echo(
                    f"  {lookups} --match-by value(s) could not be looked up: their rows are "
                    "in failures.csv (lookup_failed)"
                )
            if not problems:
                click.echo("  every row sent in this run was confirmed")
            click.echo(revertible(plan_revert(book, found["run_id"])))
            click.echo(f"reports: {found['report_dir']}")
            return 0
        listed = book.runs(limit)
    if as_json:
        echo_json(listed)
        return 0
    if not listed:
        click.echo(f"no runs yet in {path}")
        return 0
    for r in listed:
        took = _duration(r["started_at"], r["finished_at"])
        counts = ", ".join(f"{k} {v}" for k, v in r["counts"].items() if v)
        code = "-" if r["exit_code"] is None else r["exit_code"]
        click.echo(
            f"{r['run_id']}  {r['started_at'][:19]}  {took:>8}  {r['status']:<8} "
            f"exit {code}  {Path(r['file'] or '').name}  {counts}"
        )
    return 0


def _duration(start: str | None, end: str | None) -> str:
    import datetime as dt

    if not start or not end:
        return "-"
    seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


@click.command()
@click.option("--lead", "lead", metavar="ID", help="The lead id to forget.")
@click.option("--email", metavar="ADDR", help="Forget the person leadsync knows by this email.")
@click.option("--phone", metavar="N", help="Forget the person leadsync knows by this phone.")
@journal_option
@json_option
def forget(
    lead: str | None, email: str | None, phone: str | None, journal: Path | None, as_json: bool
) -> int:
    """Remove everything the journal holds about one person (an erasure request).

    By lead id, or by the email or phone leadsync looked them up or created them by:
    their confirmed field values, questionnaire answers, attempts, lookups and creates.
    Everyone else's change detection is untouched. Report folders are the user's files:
    those that still mention the lead are listed (prune them with --keep-runs).

    \b
    Example:
      leadsync forget --email olivia@example.com
    """
    from leadsync.journal import Journal
    from leadsync.retention import forget as forget_person
    from leadsync.retention import report_folders_with

    given = [v for v in (lead, email, phone) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --lead ID, --email ADDR, --phone N")
    path = journal_path(journal)
    if not path.exists():
        raise LeadsyncError(f"no journal at {path}: nothing to forget")
    with Journal(path) as book:
        book.acquire()  # not while a run is using it
        gone = forget_person(book, lead=lead, email=email, phone=phone)
        folders = [Path(r["report_dir"]) for r in book.runs(100_000) if r["report_dir"]]
    mentioned = sorted(
        {f for lead_id in gone["leads"] for f in report_folders_with(folders, lead_id)}
    )
    gone["report_folders_mentioning"] = [str(f) for f in mentioned]
    if as_json:
        echo_json(gone)
        return 0
    who = f"lead {lead}" if lead else (email or phone)
    counts = ", ".join(
        f"{gone[k]} {label}"
        for k, label in (
            ("lead_fields", "field values"),
            ("lead_pairs", "questionnaire answers"),
            ("attempts", "attempts"),
            ("creates", "creates"),
            ("lookups", "lookups"),
        )
        if k in gone
    )
    leads = ", ".join(gone["leads"]) or "no lead"
    click.echo(f"forgot {who} ({leads}): {counts}")
    for folder in mentioned:
        click.echo(f"  still in the reports of {folder} (delete it, or prune with --keep-runs)")
    return 0


_NOT_REVERTIBLE = {
    "appended": "an appended answer",
    "blank": "blank before",
    "unknown": "before not recorded",
}


@click.command()
@click.argument("run")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be put back (old <- new); send nothing."
)
@click.option(
    "--fields",
    metavar="A,B",
    help="Revert only these fields (meta for every meta key), e.g. status,office_id.",
)
@click.option("--rate", type=float, help="Pin the request rate (requests/s) instead of adapting.")
@click.option(
    "--concurrency", type=int, help=f"Leads in flight at once (default {defaults.CONCURRENCY})."
)
@journal_option
@key_file_option
@base_url_option
@mapping_option
@report_dir_option
@json_option
@click.pass_context
def revert(
    ctx: click.Context,
    run: str,
    dry_run: bool,
    fields: str | None,
    rate: float | None,
    concurrency: int | None,
    journal: Path | None,
    api_key_file: Path | None,
    base_url: str | None,
    mapping: Path | None,
    report_dir: Path | None,
    as_json: bool,
) -> int:
    """Put back what run RUN changed: each field that still holds what RUN set returns to
    its value before RUN.

    Fields changed since (by someone else) are left alone and listed as conflict;
    questionnaire answers, fields blank before and leads RUN created cannot be undone
    through the API and are listed as not_revertible. A revert is a run: journalled,
    reported, resumable, and itself revertible.

    \b
    Example:
      leadsync runs --show last             # can it be reverted, and how much
      leadsync revert last --dry-run
      leadsync revert 20261201T031500Z-3f9a1c
    """
    from leadsync.config import build_config
    from leadsync.journal import Journal
    from leadsync.revert import plan_revert
    from leadsync.revert import revert as run_revert

    chosen = {f.strip() for f in fields.split(",") if f.strip()} if fields else None
    path = journal_path(journal)
    if not path.exists():
        raise LeadsyncError(f"no journal at {path}: there is no run to revert")
    if dry_run:
        with Journal(path) as book:
            target = book.find_run(run)["run_id"]
            items = plan_revert(book, target, chosen)
        if as_json:
            echo_json([i.cells() for i in items])
            return 0
        for item in items:
            lead, field, now, back, source = item.cells()
            if source in ("snapshot", "journal"):
                click.echo(f"lead {lead}  {field}: {back} <- {now}   (before from the {source})")
            else:
                why = _NOT_REVERTIBLE.get(source, "created by the run")
                click.echo(f"lead {lead}  {field}: not revertible ({why})")
        click.echo(f"{len(items)} line(s) of run {target}; nothing was sent")
        return 0
    config = build_config(
        mapping, os.environ, base_url=base_url, rate=rate, concurrency=concurrency
    )
    key = read_key(ctx, api_key_file)
    with signals_stop() as stop:
        result = run_revert(
            run, config, report_dir, api_key=key, journal=path, fields=chosen, stop=stop
        )
    print_result(result, as_json)
    return int(result.exit_code)
