"""``leadsync sync``: the command nightly jobs run — its options, the job file, and the
notifications, ping and metrics around the run (which never change its exit code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from leadsync import defaults
from leadsync.cli.common import (
    base_url_option,
    ca_bundle_option,
    create_option,
    journal_option,
    journal_path,
    json_option,
    key_file_option,
    log,
    mapping_option,
    match_by_option,
    print_result,
    progress_reporter,
    read_key,
    redacted,
    report_dir_option,
    sheet_option,
    signals_stop,
)


@click.command()
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--job",
    "job_file",
    type=click.Path(path_type=Path),
    help="A job file (TOML): the input, mapping, journal, reports, guards and "
    "notifications of a nightly run in one place; flags given beside it win.",
)
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
@key_file_option
@base_url_option
@ca_bundle_option
@click.option(
    "--no-check-offices",
    "check_offices",
    flag_value=False,
    default=None,
    help="Do not fetch the office list first (office_id is then checked by the server only).",
)
@match_by_option
@create_option
@click.option(
    "--write-ids",
    type=click.Path(path_type=Path),
    help="With --create: write a copy of FILE (.csv or .xlsx) with the id of every lead "
    "its rows without one found or created, so the next export can carry them.",
)
@click.option(
    "--snapshot",
    is_flag=True,
    default=None,
    help="Read each lead (GET) just before its PATCH, so that `leadsync revert` can put "
    "back exactly what it held (one more request per changed lead).",
)
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
@click.option(
    "--min-rows", type=int, help="Refuse (exit 3, nothing sent) a file with fewer data rows."
)
@click.option(
    "--max-shrink",
    type=float,
    metavar="P",
    help="Refuse (exit 3, nothing sent) a file with fewer than P%% of the rows of this "
    "job's last finished run, e.g. 50.",
)
@click.option(
    "--max-invalid-rate",
    type=float,
    help="Refuse (exit 3, nothing sent) when more than this share of the rows is invalid.",
)
@click.option(
    "--notify",
    multiple=True,
    metavar="URL",
    help="When the run ends: POST a JSON message to an https:// webhook (Slack, Teams), or "
    "email a mailto: address through $LEADSYNC_SMTP_URL. Repeatable.",
)
@click.option(
    "--notify-on",
    type=click.Choice(["failure", "always"]),
    help="failure (default): exit code not 0, or a row failed, unknown or rejected.",
)
@click.option(
    "--ping",
    metavar="URL",
    help="Dead-man's switch (healthchecks.io): URL/start, then URL on exit 0, "
    "URL/<exit code> otherwise.",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path),
    help="Write the run's figures in the Prometheus text format (node_exporter's textfile "
    "collector).",
)
@click.option(
    "--keep-runs",
    metavar="AGE",
    help="After the run, prune runs older than AGE (90d, 12w) from the journal and their "
    "report folders.",
)
@journal_option
@click.option(
    "--full",
    is_flag=True,
    default=None,
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
@mapping_option
@sheet_option
@report_dir_option
@json_option
@click.pass_context
def sync(ctx: click.Context, /, **options: Any) -> int:
    """Send every valid row of FILE to the Lead API as a PATCH; report every row.

    Throttled (adaptive by default, or --rate), retried when safe, stopped at once
    by a refused key. Ctrl-C or SIGTERM stops taking new rows, finishes the ones in
    flight, writes the reports and exits 3.

    \b
    Example:
      export LEADSYNC_API_KEY=...          # or --api-key-file ~/.leadsync-key
      leadsync sync leads.xlsx --dry-run   # check first
      leadsync sync leads.xlsx
      leadsync sync --job /etc/leadsync/nightly.toml    # a nightly job (see the README)
    """
    from leadsync.notify import Notifier, exit_code_of

    o = options
    if o["rate"] is not None and o["max_rate"] is not None:
        raise click.UsageError("--rate pins the rate; --max-rate bounds the adaptive rate: use one")
    if o["job_file"] is not None and o["mapping"] is not None:
        raise click.UsageError("--job names its mapping ([run] mapping, or its own sections)")
    job, config = _job_and_config(o)
    file = o["file"] or (job.input if job else None)
    if file is None:
        raise click.UsageError("give the FILE to sync (or --job with [run] input = ...)")
    write_ids = o["write_ids"] or (job.write_ids if job else None)
    if write_ids is not None and not config.create:
        raise click.UsageError("--write-ids writes the ids of created leads: it needs --create")
    what = f"leadsync sync {Path(file).name}" + (
        f" (job {config.job_name})" if config.job_name else ""
    )
    notifier = Notifier(config, os.environ, log, what=what)
    notifier.start()
    try:
        result = _run(ctx, o, job, config, Path(file), write_ids, notifier)
    except BaseException as exc:
        notifier.finish(exit_code_of(exc), None, redacted(ctx, str(exc) or type(exc).__name__))
        raise
    notifier.finish(int(result.exit_code), result.summary)
    print_result(result, o["as_json"])
    return int(result.exit_code)


def _job_and_config(o: dict[str, Any]) -> tuple[Any, Any]:
    """The job file (if any), and the config: job or mapping file, environment, flags."""
    from leadsync.config import build_config, parse_duration
    from leadsync.job import load_job

    job = load_job(o["job_file"]) if o["job_file"] is not None else None
    flags = {
        k: o[k]
        for k in (
            "sheet",
            "rate",
            "max_rate",
            "concurrency",
            "read_timeout",
            "base_url",
            "resend_ambiguous",
            "check_offices",
            "ca_bundle",
            "match_by",
            "create",
            "snapshot",
            "max_changes",
            "max_failure_rate",
            "min_rows",
            "max_shrink",
            "max_invalid_rate",
            "notify_on",
            "ping",
        )
    }
    flags["notify"] = tuple(o["notify"]) or None
    flags["metrics_file"] = str(o["metrics_file"]) if o["metrics_file"] else None
    flags["keep_runs"] = parse_duration(o["keep_runs"]) if o["keep_runs"] else None
    if job is not None and job.report_root is not None:
        flags["report_root"] = str(job.report_root)
    base = job.config if job is not None else None
    return job, build_config(o["mapping"], os.environ, base=base, **flags)


def _run(
    ctx: click.Context,
    o: dict[str, Any],
    job: Any,
    config: Any,
    file: Path,
    write_ids: Path | None,
    notifier: Any,
) -> Any:
    from leadsync.api import sync as run_sync
    from leadsync.api import validate as run_validate

    if o["dry_run"]:
        return run_validate(file, config, o["report_dir"], command="sync --dry-run")
    key = read_key(ctx, o["api_key_file"])
    notifier.secret = key
    full = o["full"] if o["full"] is not None else bool(job and job.full)
    if full:
        log(
            "warning",
            "--full sends every field again; questionnaire answers already confirmed will "
            "be appended to the leads a second time",
        )
    journal = o["journal"] or (job.journal if job else None)
    with signals_stop() as stop, progress_reporter() as progress:
        return run_sync(
            file,
            config,
            o["report_dir"],
            api_key=key,
            journal=journal_path(journal),
            full=full,
            retry_failed=o["retry_failed"],
            stop=stop,
            progress=progress,
            write_ids=write_ids,
        )
