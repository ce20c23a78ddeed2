"""The commands that need no input file: demo, template, sandbox."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from leadsync.cli.common import (
    json_option,
    print_result,
    progress_reporter,
    report_dir_option,
    signals_stop,
)
from leadsync.errors import LeadsyncError
from leadsync.sandbox_limits import HEADER_STYLES, parse_schedule


@click.command()
@report_dir_option
@json_option
def demo(report_dir: Path | None, as_json: bool) -> int:
    """Rehearse a whole sync offline: a local sandbox API, the bundled sample export.

    Starts the sandbox on a free port (with some injected faults: 503s, and 500s and
    dropped connections after the update was applied), syncs sample_data/leads.xlsx
    to it, and shows where the reports are and what the sandbox received.

    \b
    Example:
      leadsync demo
    """
    from leadsync.demo import run_demo

    with signals_stop() as stop, progress_reporter() as progress:
        demo_run = run_demo(
            report_dir, stop=stop, progress=progress, announce=lambda t: click.echo(t, err=True)
        )
    result, again, stats, journal = (
        demo_run.result,
        demo_run.again,
        demo_run.stats,
        demo_run.journal,
    )
    print_result(result, as_json)
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
    # the sample has deliberate mistakes: exit 1 is the demo working
    return 0 if result.exit_code in (0, 1) else int(result.exit_code)


@click.command()
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
@click.option(
    "--create",
    is_flag=True,
    help="The template of new leads (sync --create): type, email, source and the rest too.",
)
def template(fmt: str | None, output: Path | None, force: bool, create: bool) -> int:
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
        stream.write(template_csv(create).encode("utf-8"))
        stream.flush()
        return 0
    if fmt is None:
        fmt = "csv" if output is not None and output.suffix.lower() in (".csv", ".txt") else "xlsx"
    path = output or Path(f"leadsync-template.{fmt}")
    if path.exists() and not force:
        raise LeadsyncError(f"{path} already exists: choose another -o PATH or add --force")
    write_template(path, fmt, create)
    click.echo(f"wrote {path}")
    return 0


@click.command()
@click.option("--list", "listing", is_flag=True, help="List the packaged templates (the default).")
@click.option(
    "--copy",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy them into this folder, to edit.",
)
@click.option("--force", is_flag=True, help="With --copy: overwrite files already there.")
def templates(listing: bool, target: Path | None, force: bool) -> int:
    """List the templates that ship with leadsync, or copy them to edit.

    The blank input sheets (CSV, XLSX), a commented mapping file, and a crontab line and
    systemd units for a nightly run.

    \b
    Example:
      leadsync templates --copy ~/leadsync
    """
    from leadsync.data import copy_templates, packaged

    if target is not None:
        for path in copy_templates(target, force=force):
            click.echo(f"wrote {path}")
        return 0
    for item in packaged("templates"):
        click.echo(item.name)
    return 0


@click.command()
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
    "--rate-headers",
    type=click.Choice(HEADER_STYLES),
    default="x-ratelimit",
    show_default=True,
    help="How the rate limit is told: Laravel's X-RateLimit-*, with a reset as an epoch or "
    "in seconds, the IETF drafts' RateLimit-* trio or structured RateLimit/RateLimit-Policy, "
    "or not at all.",
)
@click.option(
    "--no-rate-headers", "no_rate_headers", is_flag=True, help="The same as --rate-headers none."
)
@click.option(
    "--rate-headers-on",
    type=click.Choice(["all", "429"]),
    default="all",
    show_default=True,
    help="Send the rate headers on every answer, or on 429s only.",
)
@click.option(
    "--create-answer",
    type=click.Choice(["data", "flat", "none"]),
    default="data",
    show_default=True,
    help='How POST /leads answers: {"data": lead}, the lead itself, or no id at all.',
)
@click.option(
    "--rate-schedule",
    metavar="S:N,...",
    help="Change the limit during the run: '30:5,60:20' is 5 from the 30th second after the "
    "first request, 20 from the 60th.",
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
    rate_headers: str,
    no_rate_headers: bool,
    rate_headers_on: str,
    create_answer: str,
    rate_schedule: str | None,
    retry_after: bool,
    latency: float,
    fail_503: float,
    fail_500_after: float,
    drop_after: float,
    stall_after: float,
    stall_seconds: float,
    fail_rate: float,
    seed: int,
) -> int:
    """Serve a local Lead API simulator to rehearse against (Ctrl-C stops it).

    Same rules as the real API, leads kept in memory, optional rate limit and
    seeded faults. GET /_sandbox/stats shows what it received and applied;
    POST /_sandbox/reset starts afresh.

    \b
    Example:
      leadsync sandbox --port 8808 --rate-limit 20 --latency 0.1 --fail-503 0.05
      LEADSYNC_BASE_URL=http://127.0.0.1:8808/api/v103 LEADSYNC_API_KEY=sandbox-key ...
    """
    from leadsync.addresses import is_loopback
    from leadsync.sandbox import (
        DEFAULT_KEY,
        Sandbox,
        SandboxConfig,
        parse_lead_ids,
        parse_offices,
    )

    try:
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
            rate_headers="none" if no_rate_headers else rate_headers,
            rate_headers_on=rate_headers_on,
            create_answer=create_answer,
            rate_schedule=parse_schedule(rate_schedule) if rate_schedule else (),
            retry_after=retry_after,
            latency=latency,
            fail_503=fail_503,
            fail_500_after=fail_500_after,
            drop_after=drop_after,
            stall_after=stall_after,
            stall_seconds=stall_seconds,
            seed=seed,
            fail_rate=fail_rate,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
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
    return 0
