"""Command line: a thin click layer over the library (spec §7).

One error boundary (:class:`_Boundary`) turns every :class:`LeadsyncError` into one line
on stderr and its exit code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from leadsync import __version__, defaults
from leadsync.errors import ExitCode, LeadsyncError

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in leadsync, not in the input


class _Boundary(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LeadsyncError as exc:
            _traceback_if_debug(ctx)
            _log("error", _redacted(ctx, str(exc)), exit_code=int(exc.exit_code))
            ctx.exit(int(exc.exit_code))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("leadsync: interrupted", err=True)
            ctx.exit(int(ExitCode.ABORTED))
        except BrokenPipeError:
            # the reader went away (`leadsync plan ... | head`): not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as exc:
            # the machine's doing (a full disk, a folder gone), not a bug: say what, stop
            _traceback_if_debug(ctx)
            where = f": {exc.filename}" if exc.filename else ""
            _log(
                "error",
                _redacted(ctx, f"cannot go on: {exc.strerror or exc}{where}"),
                exit_code=int(ExitCode.ABORTED),
            )
            ctx.exit(int(ExitCode.ABORTED))
        except Exception as exc:
            _traceback_if_debug(ctx)
            click.echo(
                f"leadsync: internal error: {type(exc).__name__}: {_redacted(ctx, str(exc))} "
                "(this is a bug; run again with --debug for the traceback)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


def _traceback_if_debug(ctx: click.Context) -> None:
    """With --debug, the traceback (the key redacted from it) before the one-line error."""
    if ctx.obj and ctx.obj.get("debug"):
        import traceback

        click.echo(_redacted(ctx, traceback.format_exc()).rstrip(), err=True)


def _redacted(ctx: click.Context, text: str) -> str:
    secret = (ctx.obj or {}).get("secret")
    if secret:
        from leadsync.client import redact

        return redact(text, secret)
    return text


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="leadsync")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Only errors on stderr: no progress, notes or warnings."
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Progress as log lines every 2 s, even on a terminal."
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr as text, or as JSON for log shippers.",
)
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, verbose: bool, log_format: str) -> None:
    """Apply spreadsheet rows (CSV, XLSX) to the Lead API: validate, sync, report.

    \b
    Start with:
      leadsync template -o leads.xlsx        # a blank sheet with every column
      leadsync validate leads.xlsx           # check it; nothing is sent

    Exit codes: 0 all rows fine, 1 some rows invalid or failed, 2 usage or
    unreadable input, 3 run aborted.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, quiet=quiet, verbose=verbose, log_format=log_format)


def _log(level: str, message: str, opts: dict[str, Any] | None = None, **data: Any) -> None:
    """One log line on stderr, as text or JSON (--log-format); --quiet keeps errors only.

    ``opts``: the root command's options, for a caller on another thread (click's
    context is per thread)."""
    if opts is None:
        ctx = click.get_current_context(silent=True)
        opts = (ctx.find_root().obj if ctx is not None else None) or {}
    if opts.get("quiet") and level != "error":
        return
    if opts.get("log_format") == "json":
        import datetime as dt

        line = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "level": level,
            "msg": message,
            **data,
        }
        click.echo(json.dumps(line, ensure_ascii=False, default=str), err=True)
    elif level == "info":
        click.echo(f"leadsync: {message}", err=True)
    else:
        click.echo(f"leadsync: {'note' if level == 'note' else level}: {message}", err=True)


_mapping_option = click.option(
    "--mapping",
    "-m",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML mapping file: column renames, value maps, defaults, date order.",
)
_sheet_option = click.option("--sheet", help="Worksheet to read (default: the first visible one).")
_report_dir_option = click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the reports (default: leadsync-reports/<run-id>/).",
)
_journal_option = click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite journal (default: $LEADSYNC_JOURNAL, else your state folder, "
    "e.g. ~/.local/state/leadsync/journal.sqlite).",
)
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
)


_key_file_option = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the API key (default: $LEADSYNC_API_KEY).",
)
_base_url_option = click.option(
    "--base-url", help="API base URL (default: $LEADSYNC_BASE_URL, else the live API)."
)
_ca_bundle_option = click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, exists=True),
    help="CA certificates file to verify the API's TLS with (default: $LEADSYNC_CA_BUNDLE, "
    "else the system's). Verification cannot be turned off.",
)


_match_by_option = click.option(
    "--match-by",
    type=click.Choice(["email", "phone"]),
    help="For rows without a lead id: find the lead by this column (GET /person/leads, "
    "when sending); no match or several matches is a row error, never a guess.",
)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_mapping_option
@_sheet_option
@_report_dir_option
@_match_by_option
@click.option(
    "--check-offices",
    is_flag=True,
    help="Also check office_id against the account's offices (one GET /offices; needs the key).",
)
@_key_file_option
@_base_url_option
@_json_option
@click.pass_context
def validate(
    ctx: click.Context,
    file: Path,
    mapping: Path | None,
    sheet: str | None,
    report_dir: Path | None,
    match_by: str | None,
    check_offices: bool,
    api_key_file: Path | None,
    base_url: str | None,
    as_json: bool,
) -> None:
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

    config = build_config(mapping, os.environ, sheet=sheet, base_url=base_url, match_by=match_by)
    office_ids = None
    if check_offices:
        office_ids = {o for o, _ in _offices(ctx, config, api_key_file) if isinstance(o, int)}
    result = run_validate(file, config, report_dir, office_ids=office_ids)
    _print_result(result, as_json)
    sys.exit(int(result.exit_code))


def _api_key(ctx: click.Context, api_key_file: Path | None) -> str:
    """The key from the key file or the environment; remembered so errors can redact it."""
    from leadsync.config import read_api_key

    key, warnings = read_api_key(os.environ, api_key_file)
    ctx.obj["secret"] = key
    for w in warnings:
        _log("warning", w)
    return key


def _offices(ctx: click.Context, config: Any, api_key_file: Path | None) -> Any:
    from leadsync.api import list_offices

    return list_offices(config, _api_key(ctx, api_key_file))


@main.command()
@_key_file_option
@_base_url_option
@_json_option
@click.pass_context
def offices(
    ctx: click.Context, api_key_file: Path | None, base_url: str | None, as_json: bool
) -> None:
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
        click.echo(
            json.dumps([{"id": o, "name": n} for o, n in found], indent=2, ensure_ascii=False)
        )
        return
    width = max((len(str(o)) for o, _ in found), default=2)
    click.echo(f"{'id':>{width}}  name")
    for oid, name in found:
        click.echo(f"{oid!s:>{width}}  {name}")


def _print_result(result: Any, as_json: bool) -> None:
    for notice in result.notices:
        _log("note", notice)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False))
    else:
        from leadsync.summary import format_summary

        click.echo(format_summary(result.summary))


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and report only; send nothing.")
@click.option("--rate", type=float, help="Pin the request rate (requests/s) instead of adapting.")
@click.option(
    "--max-rate",
    type=float,
    help=f"Upper bound for the adaptive rate (default {defaults.MAX_RATE:g}/s).",
)
@click.option(
    "--concurrency", type=int, help=f"Requests in flight at once (default {defaults.CONCURRENCY})."
)
@click.option(
    "--timeout",
    "read_timeout",
    type=float,
    help=f"Seconds to wait for each answer (default {defaults.READ_TIMEOUT:g}).",
)
@click.option(
    "--resend-ambiguous",
    is_flag=True,
    default=None,
    help="Re-send questionnaire rows whose outcome is unknown (may append twice).",
)
@_key_file_option
@_base_url_option
@_ca_bundle_option
@click.option(
    "--no-check-offices",
    "check_offices",
    flag_value=False,
    default=None,
    help="Do not fetch the office list first (office_id is then checked by the server only).",
)
@_match_by_option
@click.option(
    "--max-changes",
    type=int,
    help="Refuse to run (exit 3, nothing sent) if the file would change more leads than this.",
)
@click.option(
    "--max-failure-rate",
    type=float,
    help="Stop (exit 3) once more than this share of the rows sent fail, e.g. 0.05.",
)
@_journal_option
@click.option(
    "--full",
    is_flag=True,
    help="Send every field of every row, not only what changed since the last confirmed "
    "run (questionnaire answers already sent are appended again).",
)
@click.option(
    "--retry-failed",
    "retry_failed",
    metavar="RUN",
    help="Send only the rows that failed or ended unknown in run RUN (an id from "
    "`leadsync runs`, a prefix of one, or 'last').",
)
@_mapping_option
@_sheet_option
@_report_dir_option
@_json_option
@click.pass_context
def sync(
    ctx: click.Context,
    file: Path,
    dry_run: bool,
    rate: float | None,
    max_rate: float | None,
    concurrency: int | None,
    read_timeout: float | None,
    resend_ambiguous: bool | None,
    api_key_file: Path | None,
    base_url: str | None,
    ca_bundle: str | None,
    check_offices: bool | None,
    match_by: str | None,
    max_changes: int | None,
    max_failure_rate: float | None,
    journal: Path | None,
    full: bool,
    retry_failed: str | None,
    mapping: Path | None,
    sheet: str | None,
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """Send every valid row of FILE to the Lead API as a PATCH; report every row.

    Throttled (adaptive by default, or --rate), retried when safe, stopped at once
    by a refused key. Ctrl-C or SIGTERM stops taking new rows, finishes the ones in
    flight, writes the reports and exits 3.

    \b
    Example:
      export LEADSYNC_API_KEY=...          # or --api-key-file ~/.leadsync-key
      leadsync sync leads.xlsx --dry-run   # check first
      leadsync sync leads.xlsx
    """
    from leadsync.api import sync as run_sync
    from leadsync.api import validate as run_validate
    from leadsync.config import build_config

    if rate is not None and max_rate is not None:
        raise click.UsageError("--rate pins the rate; --max-rate bounds the adaptive rate: use one")
    config = build_config(
        mapping,
        os.environ,
        sheet=sheet,
        rate=rate,
        max_rate=max_rate,
        concurrency=concurrency,
        read_timeout=read_timeout,
        base_url=base_url,
        resend_ambiguous=resend_ambiguous,
        check_offices=check_offices,
        ca_bundle=ca_bundle,
        match_by=match_by,
        max_changes=max_changes,
        max_failure_rate=max_failure_rate,
    )
    if dry_run:
        result = run_validate(file, config, report_dir, command="sync --dry-run")
        _print_result(result, as_json)
        sys.exit(int(result.exit_code))
    key = _api_key(ctx, api_key_file)
    if full:
        _log(
            "warning",
            "--full sends every field again; questionnaire answers already confirmed will "
            "be appended to the leads a second time",
        )
    with _signals_stop() as stop, _progress_reporter() as progress:
        result = run_sync(
            file,
            config,
            report_dir,
            api_key=key,
            journal=_journal_path(journal),
            full=full,
            retry_failed=retry_failed,
            stop=stop,
            progress=progress,
        )
    _print_result(result, as_json)
    sys.exit(int(result.exit_code))


@main.command()
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
    help="Output format.",
)
@_journal_option
@_key_file_option
@_base_url_option
@_mapping_option
@_sheet_option
@click.pass_context
def plan(
    ctx: click.Context,
    file: Path,
    live: bool,
    fmt: str,
    journal: Path | None,
    api_key_file: Path | None,
    base_url: str | None,
    mapping: Path | None,
    sheet: str | None,
) -> None:
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

    config = build_config(mapping, os.environ, sheet=sheet, base_url=base_url)
    key = None
    if live:
        key = _api_key(ctx, api_key_file)
    invalid: list[int] = []
    changes = run_plan(
        file, config, journal=_journal_path(journal), api_key=key, live=live, left_out=invalid
    )
    if fmt == "json":
        items = [c.__dict__ for c in changes]
        click.echo(json.dumps(items, indent=2, ensure_ascii=False, default=str))
    elif fmt == "csv":
        writer = csv_module.writer(sys.stdout)
        writer.writerow(["row", "lead_id", "field", "old", "new"])
        for c in changes:
            writer.writerow([c.row, c.lead_id, c.field, _show(c.old), _show(c.new)])
    else:
        count = leads = 0
        last = None
        for c in changes:
            if c.lead_id != last:
                click.echo(f"row {c.row}  lead {c.lead_id}")
                last = c.lead_id
                leads += 1
            click.echo(f"    {c.field}: {_show(c.old)} -> {_show(c.new)}")
            count += 1
        click.echo(f"{count} change(s) to {leads} lead(s)" if count else "nothing would change")
    if invalid:  # on stderr: csv and json output stay machine-readable
        rows = ", ".join(map(str, invalid[:10])) + (" ..." if len(invalid) > 10 else "")
        _log(
            "note",
            f"{len(invalid)} invalid row(s) left out, as a sync would leave them (row"
            f"{'s' if len(invalid) > 1 else ''} {rows}): `leadsync validate {file}` says why",
        )
        sys.exit(int(ExitCode.ROWS_FAILED))


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@main.command()
@_journal_option
@click.option(
    "--show", "show", metavar="RUN", help="List the rows of run RUN that did not succeed."
)
@click.option("--limit", type=int, default=20, show_default=True, help="How many runs to list.")
@_json_option
def runs(journal: Path | None, show: str | None, limit: int, as_json: bool) -> None:
    """List past sync runs from the journal, newest first, with their counts.

    \b
    Example:
      leadsync runs
      leadsync runs --show last              # what went wrong in the last run
      leadsync sync leads.xlsx --retry-failed last
    """
    from leadsync.journal import Journal

    path = _journal_path(journal)
    if not path.exists():
        raise LeadsyncError(f"no journal at {path} yet: it is created by the first sync")
    with Journal(path) as book:
        if show:
            found = book.find_run(show)
            problems = book.run_problems(found["run_id"])
            lookups = book.failed_lookups(found["run_id"])
            if as_json:
                shown = {"run": found, "rows": problems, "lookups_failed": lookups}
                click.echo(json.dumps(shown, indent=2))
                return
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
            click.echo(f"reports: {found['report_dir']}")
            return
        listed = book.runs(limit)
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo(f"no runs yet in {path}")
        return
    for r in listed:
        took = _duration(r["started_at"], r["finished_at"])
        counts = ", ".join(f"{k} {v}" for k, v in r["counts"].items() if v)
        code = "-" if r["exit_code"] is None else r["exit_code"]
        click.echo(
            f"{r['run_id']}  {r['started_at'][:19]}  {took:>8}  {r['status']:<8} "
            f"exit {code}  {Path(r['file'] or '').name}  {counts}"
        )


def _duration(start: str | None, end: str | None) -> str:
    import datetime as dt

    if not start or not end:
        return "-"
    seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _journal_path(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get(defaults.ENV_JOURNAL)
    if env:
        return Path(env)
    from leadsync.journal import default_path

    return default_path()


@main.command()
@_report_dir_option
@_json_option
def demo(report_dir: Path | None, as_json: bool) -> None:
    """Rehearse a whole sync offline: a local sandbox API, the bundled sample export.

    Starts the sandbox on a free port (with some injected faults: 503s, and 500s and
    dropped connections after the update was applied), syncs sample_data/leads.xlsx
    to it, and shows where the reports are and what the sandbox received.

    \b
    Example:
      leadsync demo
    """
    from leadsync.api import sync as run_sync
    from leadsync.config import Config
    from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig

    sample = _find_sample()
    faults = SandboxConfig(
        latency=0.02, fail_503=0.05, fail_500_after=0.03, drop_after=0.03, seed=7
    )
    with Sandbox(faults) as sandbox:
        click.echo(
            f"sandbox listening on {sandbox.base_url} (faults: 503 5%, 500 after applying 3%, "
            "connection dropped after applying 3%)",
            err=True,
        )
        config = Config(base_url=sandbox.base_url, backoff_initial=0.1)
        journal = Path(tempfile.mkdtemp(prefix="leadsync-demo-")) / "journal.sqlite"
        with _signals_stop() as stop, _progress_reporter() as progress:
            result = run_sync(
                sample,
                config,
                report_dir,
                api_key=DEFAULT_KEY,
                journal=journal,
                stop=stop,
                progress=progress,
            )
            again = None
            if not stop.is_set():  # the nightly re-run: nothing changed, nothing is sent
                again = run_sync(
                    sample,
                    config,
                    None,
                    api_key=DEFAULT_KEY,
                    journal=journal,
                    stop=stop,
                    xlsx_report=False,
                )
        stats = sandbox.stats()
    _print_result(result, as_json)
    if not as_json:
        click.echo(
            f"sandbox: {stats['applied_requests']} updates applied to {len(stats['applied'])} "
            f"leads; questionnaire answers applied twice: "
            f"{stats['duplicate_questionnaire_pairs']}; faults injected: {stats['faults']}"
        )
        if stats["applied_requests"] > len(stats["applied"]):
            click.echo(
                "(a row without questionnaire answers is simply sent again after an ambiguous "
                "error: the same values twice, harmless)"
            )
        if again is not None:
            click.echo(
                f"re-run of the same file (journal {journal}): "
                f"{again.summary['outcomes']['unchanged']} rows unchanged, "
                f"{again.summary['outcomes']['updated']} updates sent"
            )
        click.echo(
            f"(a real sync of this file exits {int(result.exit_code)}: the sample has "
            "deliberate mistakes, see failures.csv)"
        )
    sys.exit(0 if result.exit_code in (0, 1) else int(result.exit_code))


def _find_sample() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (Path("sample_data/leads.xlsx"), here.parent / "sample_data" / "leads.xlsx"):
        if candidate.exists():
            return candidate
    raise LeadsyncError(
        "the sample export sample_data/leads.xlsx was not found: run the demo "
        "from the leadsync source folder"
    )


@contextlib.contextmanager
def _signals_stop() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM; a second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(
            f"leadsync: {signal.Signals(signum).name}: finishing the rows in flight, "
            "then writing the reports (again to stop at once)",
            err=True,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _progress_reporter() -> Iterator[Any]:
    """A rich progress bar on a terminal; a log line every few seconds otherwise (cron)."""
    stream = sys.stderr
    opts = click.get_current_context().find_root().obj or {}
    if opts.get("quiet"):
        yield lambda done, total, counts: None
        return
    if stream.isatty() and not opts.get("verbose") and opts.get("log_format") != "json":
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("rows", total=None)

            def update(done: int, total: int, counts: Any) -> None:
                failed = sum(counts[o] for o in ("invalid", "rejected", "failed", "unknown"))
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    description=f"rows ({counts['updated']} updated, {failed} not)",
                )

            yield update
        return
    last = [time.monotonic()]
    every = 2.0 if opts.get("verbose") else defaults.PROGRESS_EVERY

    def log(done: int, total: int, counts: Any) -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        parts = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        _log(
            "info",
            f"{done}/{total} rows ({parts})",
            opts,
            rows_done=done,
            rows=total,
            outcomes={k: v for k, v in counts.items() if v},
        )

    yield log


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    help="Template file type (default: from -o's extension, else xlsx).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it ('-' for stdout, CSV only). Default: leadsync-template.<format>.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def template(fmt: str | None, output: Path | None, force: bool) -> None:
    """Write a blank input template with every column the API accepts.

    The header of each column explains what goes in it (a comment in XLSX, a
    'Columns' sheet too); the example row has the id EXAMPLE: delete it.

    \b
    Example:
      leadsync template --format csv -o leads.csv
    """
    from leadsync.template import template_csv, write_template

    if output is not None and str(output) == "-":
        if fmt == "xlsx":
            raise click.UsageError("only the CSV template can go to stdout (use --format csv)")
        stream = sys.stdout.buffer
        stream.write(template_csv().encode("utf-8"))
        stream.flush()
        return
    if fmt is None:
        fmt = "csv" if output is not None and output.suffix.lower() in (".csv", ".txt") else "xlsx"
    path = output or Path(f"leadsync-template.{fmt}")
    if path.exists() and not force:
        raise LeadsyncError(f"{path} already exists: choose another -o PATH or add --force")
    write_template(path, fmt)
    click.echo(f"wrote {path}")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Keep it on loopback: the sandbox has no real security.",
)
@click.option("--port", type=int, default=8808, show_default=True, help="Port (0: any free port).")
@click.option(
    "--api-key",
    "api_key",
    default=None,
    help="The key it accepts (default: $LEADSYNC_API_KEY, else 'sandbox-key'). "
    "'revoked-key' always gets 403.",
)
@click.option(
    "--leads",
    "leads_spec",
    default=None,
    help="Lead ids to seed, e.g. '1000-1999,ABC' (default: 1000-9999 and 480001-480300).",
)
@click.option(
    "--lead-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of lead objects (each with an 'id') to seed as well.",
)
@click.option(
    "--offices",
    "offices_spec",
    default=None,
    help="Office ids and names, e.g. '1213:Bristol,1214:Bath'.",
)
@click.option(
    "--partial-updates", is_flag=True, help="Accept updates without first_name/last_name."
)
@click.option("--rate-limit", type=float, help="Requests allowed per second (or per --window).")
@click.option("--burst", type=int, default=1, show_default=True, help="Token bucket size.")
@click.option(
    "--window",
    type=float,
    help="Fixed window in seconds (Laravel style): --rate-limit requests per window.",
)
@click.option(
    "--rate-headers/--no-rate-headers",
    default=True,
    show_default=True,
    help="Send X-RateLimit-Limit/-Remaining.",
)
@click.option(
    "--retry-after/--no-retry-after",
    default=True,
    show_default=True,
    help="Send Retry-After on 429.",
)
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds added to every request."
)
@click.option("--fail-503", type=float, default=0.0, help="Chance of 503 before applying.")
@click.option("--fail-500-after", type=float, default=0.0, help="Chance of 500 after applying.")
@click.option(
    "--drop-after",
    type=float,
    default=0.0,
    help="Chance of dropping the connection after applying.",
)
@click.option(
    "--stall-after", type=float, default=0.0, help="Chance of stalling (no answer) after applying."
)
@click.option(
    "--stall-seconds", type=float, default=30.0, show_default=True, help="How long a stall lasts."
)
@click.option(
    "--fail-rate",
    type=float,
    default=0.0,
    help="Chance of a fault of any kind, split evenly between 503, 500 after applying and "
    "a dropped connection after applying (adds to the specific chances).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the faults.")
def sandbox(
    host: str,
    port: int,
    api_key: str | None,
    leads_spec: str | None,
    lead_file: Path | None,
    offices_spec: str | None,
    partial_updates: bool,
    rate_limit: float | None,
    burst: int,
    window: float | None,
    rate_headers: bool,
    retry_after: bool,
    latency: float,
    fail_503: float,
    fail_500_after: float,
    drop_after: float,
    stall_after: float,
    stall_seconds: float,
    fail_rate: float,
    seed: int,
) -> None:
    """Serve a local Lead API simulator to rehearse against (Ctrl-C stops it).

    Same rules as the real API, leads kept in memory, optional rate limit and
    seeded faults. GET /_sandbox/stats shows what it received and applied;
    POST /_sandbox/reset starts afresh.

    \b
    Example:
      leadsync sandbox --port 8808 --rate-limit 20 --latency 0.1 --fail-503 0.05
      LEADSYNC_BASE_URL=http://127.0.0.1:8808/api/v103 LEADSYNC_API_KEY=sandbox-key ...
    """
    from leadsync.sandbox import (
        DEFAULT_KEY,
        Sandbox,
        SandboxConfig,
        is_loopback,
        parse_lead_ids,
        parse_offices,
    )

    if not 0 <= fail_rate <= 1:
        raise click.BadParameter(
            f"{fail_rate} is not a chance between 0 and 1", param_hint="--fail-rate"
        )
    fail_503, fail_500_after, drop_after = (
        p + fail_rate / 3 for p in (fail_503, fail_500_after, drop_after)
    )
    for name, p in (
        ("--fail-503", fail_503),
        ("--fail-500-after", fail_500_after),
        ("--drop-after", drop_after),
        ("--stall-after", stall_after),
    ):
        if not 0 <= p <= 1:
            raise click.BadParameter(f"{p} is not a chance between 0 and 1", param_hint=name)
    if fail_503 + fail_500_after + drop_after + stall_after > 1:
        raise click.UsageError("the fault chances add up to more than 1")
    if window is not None and rate_limit is None:
        raise click.UsageError("--window needs --rate-limit (requests per window)")
    config = SandboxConfig(
        host=host,
        port=port,
        api_key=api_key or os.environ.get("LEADSYNC_API_KEY") or DEFAULT_KEY,
        leads=parse_lead_ids(leads_spec) if leads_spec else None,
        lead_file=lead_file,
        require_names=not partial_updates,
        rate_limit=rate_limit,
        burst=burst,
        window=window,
        rate_headers=rate_headers,
        retry_after=retry_after,
        latency=latency,
        fail_503=fail_503,
        fail_500_after=fail_500_after,
        drop_after=drop_after,
        stall_after=stall_after,
        stall_seconds=stall_seconds,
        seed=seed,
    )
    if offices_spec:
        try:
            config.offices = parse_offices(offices_spec)
        except ValueError:
            raise click.BadParameter(
                f"{offices_spec!r}: use ids and names like 1213:Bristol,1214:Bath",
                param_hint="--offices",
            ) from None
    try:
        server = Sandbox(config)
    except OSError as exc:
        raise LeadsyncError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if not is_loopback(host):
        click.echo(
            f"leadsync: warning: the sandbox is reachable from other machines on {host}; "
            "it has no real security",
            err=True,
        )
    click.echo(
        f"leadsync sandbox listening on {server.base_url} (loopback only)"
        if is_loopback(host)
        else f"leadsync sandbox listening on {server.base_url}",
        err=True,
    )
    # never echo a key that came from the environment: it may be a real one
    shown = (
        config.api_key if api_key or config.api_key == DEFAULT_KEY else "(from $LEADSYNC_API_KEY)"
    )
    click.echo(
        f"  key: {shown}   leads: {len(server.leads)}   stats: {server.url}/_sandbox/stats",
        err=True,
    )
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        click.echo("leadsync sandbox stopped", err=True)
    finally:
        server.server.server_close()


def run() -> None:
    """Entry point of the ``leadsync`` console script."""
    if sys.platform.startswith("linux"):
        # pyarrow's jemalloc pool hands memory back sooner than its default (mimalloc):
        # measured 250 MB instead of 290 MB peak on a 1M-row validate (benchmarks/)
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    # collecting cycles every 700 allocations (Python's default) cost ~8% of a 100k-row
    # XLSX validate, whose cells arrive as millions of small objects
    gc.set_threshold(*defaults.GC_THRESHOLD)
    main(prog_name="leadsync")


if __name__ == "__main__":  # pragma: no cover
    run()
