"""What every command shares: log lines, options, the key, progress, signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from leadsync import __version__, defaults
from leadsync.model import Outcome


def traceback_if_debug(ctx: click.Context) -> None:
    """With --debug, the traceback (the key redacted from it) before the one-line error."""
    if ctx.obj and ctx.obj.get("debug"):
        import traceback

        click.echo(redacted(ctx, traceback.format_exc()).rstrip(), err=True)


def redacted(ctx: click.Context, text: str) -> str:
    secret = (ctx.obj or {}).get("secret")
    if secret:
        from leadsync.client import redact

        return redact(text, secret)
    return text


def log(level: str, message: str, opts: dict[str, Any] | None = None, **data: Any) -> None:
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


mapping_option = click.option(
    "--mapping",
    "-m",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML mapping file: column renames, value maps, defaults, date order.",
)


sheet_option = click.option("--sheet", help="Worksheet to read (default: the first visible one).")


report_dir_option = click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the reports (default: leadsync-reports/<run-id>/).",
)


journal_option = click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite journal (default: $LEADSYNC_JOURNAL, else your state folder, "
    "e.g. ~/.local/state/leadsync/journal.sqlite).",
)


def remember_json(ctx: click.Context, _: click.Parameter, value: Any) -> Any:
    """An option's callback: ``--json`` (or ``--format json``) asks for JSON on stdout,
    so the error boundary answers in JSON too."""
    if value is True or value == "json":
        ctx.find_root().ensure_object(dict)["as_json"] = True
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=remember_json,
    help='Print the summary as JSON on stdout (an error too, as {"error": ...}).',
)


def echo_json(doc: Any) -> None:
    """A command's JSON document on stdout (the error boundary then prints no other)."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().ensure_object(dict)["json_printed"] = True


def echo_json_error(ctx: click.Context, message: str, exit_code: int) -> None:
    """With --json, a run that stopped as a whole still prints one JSON document: what
    stopped it and its exit code (a script reading stdout gets JSON either way)."""
    opts = ctx.find_root().obj or {}
    if not opts.get("as_json") or opts.get("json_printed"):
        return
    doc = {
        "leadsync_version": __version__,
        "command": ctx.invoked_subcommand,
        "exit_code": exit_code,
        "error": message,
    }
    echo_json(doc)


key_file_option = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the API key (default: $LEADSYNC_API_KEY).",
)


base_url_option = click.option(
    "--base-url", help="API base URL (default: $LEADSYNC_BASE_URL, else the live API)."
)


ca_bundle_option = click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, exists=True),
    help="CA certificates file to verify the API's TLS with (default: $LEADSYNC_CA_BUNDLE, "
    "else the system's). Verification cannot be turned off.",
)


match_by_option = click.option(
    "--match-by",
    type=click.Choice(["email", "phone"]),
    help="For rows without a lead id: find the lead by this column (GET /person/leads, "
    "when sending); no match or several matches is a row error, never a guess.",
)


create_option = click.option(
    "--create",
    is_flag=True,
    default=None,
    help="Create the leads of rows without a lead id (POST /leads); with --match-by, of "
    "rows whose lookup finds no lead (upsert). Never creates a person twice.",
)


def read_key(ctx: click.Context, api_key_file: Path | None) -> str:
    """The key from the key file or the environment; remembered so errors can redact it."""
    from leadsync.config import read_api_key

    key, warnings = read_api_key(os.environ, api_key_file)
    ctx.obj["secret"] = key
    for w in warnings:
        log("warning", w)
    return key


def print_result(result: Any, as_json: bool) -> None:
    for notice in result.notices:
        log("note", notice)
    if as_json:
        echo_json(result.summary)
    else:
        from leadsync.summary import format_summary

        click.echo(format_summary(result.summary))


def journal_path(given: Path | None) -> Path:
    from leadsync.journal import journal_location

    return journal_location(given, os.environ)


@contextlib.contextmanager
def signals_stop() -> Iterator[threading.Event]:
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
            f"leadsync: {signal.Signals(signum).name}: finishing the rows in flight (those "
            "unanswered after [sending] stop_grace end unknown), then writing the reports "
            "(again to stop at once)",
            err=True,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# what the progress bar counts as 'not' updated (not_attempted shows in the summary)
_NOT_UPDATED = (Outcome.INVALID, Outcome.REJECTED, Outcome.FAILED, Outcome.UNKNOWN)


@contextlib.contextmanager
def progress_reporter() -> Iterator[Any]:
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
                failed = sum(n for o, n in counts.items() if o in _NOT_UPDATED)
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    description=f"rows ({counts[Outcome.UPDATED]} updated, "
                    f"{counts[Outcome.CREATED]} created, {failed} not)"
                    if counts[Outcome.CREATED]
                    else f"rows ({counts[Outcome.UPDATED]} updated, {failed} not)",
                )

            yield update
        return
    last = [time.monotonic()]
    every = 2.0 if opts.get("verbose") else defaults.PROGRESS_EVERY

    def log_line(done: int, total: int, counts: Any) -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        parts = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        log(
            "info",
            f"{done}/{total} rows ({parts})",
            opts,
            rows_done=done,
            rows=total,
            outcomes={k: v for k, v in counts.items() if v},
        )

    yield log_line
