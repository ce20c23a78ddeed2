"""Command line: a thin click layer over the library (spec §7).

One error boundary (:class:`_Boundary`) turns every :class:`LeadsyncError` into one line
on stderr and its exit code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from leadsync import __version__
from leadsync.errors import ExitCode, LeadsyncError

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in leadsync, not in the input


class _Boundary(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LeadsyncError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"leadsync: error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("leadsync: interrupted", err=True)
            ctx.exit(int(ExitCode.ABORTED))
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"leadsync: internal error: {type(exc).__name__}: {exc} "
                "(this is a bug; run again with --debug for the traceback)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="leadsync")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Apply spreadsheet rows (CSV, XLSX) to the Lead API: validate, sync, report.

    \b
    Start with:
      leadsync template -o leads.xlsx        # a blank sheet with every column
      leadsync validate leads.xlsx           # check it; nothing is sent

    Exit codes: 0 all rows fine, 1 some rows invalid or failed, 2 usage or
    unreadable input, 3 run aborted.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


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
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_mapping_option
@_sheet_option
@_report_dir_option
@_json_option
def validate(
    file: Path, mapping: Path | None, sheet: str | None, report_dir: Path | None, as_json: bool
) -> None:
    """Check every row of FILE against the Lead API's rules; send nothing.

    Writes failures.csv, successes.csv, summary.json and report.xlsx (your own
    rows with the bad cells in red and a comment on each).

    \b
    Example:
      leadsync validate sample_data/leads.xlsx --report-dir checked/
    """
    from leadsync.api import validate as run_validate
    from leadsync.config import build_config

    config = build_config(mapping, os.environ, sheet=sheet)
    result = run_validate(file, config, report_dir)
    for notice in result.notices:
        click.echo(f"leadsync: note: {notice}", err=True)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False))
    else:
        click.echo(format_summary(result.summary))
    sys.exit(int(result.exit_code))


def format_summary(summary: dict[str, Any]) -> str:
    """The human summary printed after a run."""
    file = summary["file"]
    where = file["name"] + (f" (sheet {file['sheet']!r})" if file.get("sheet") else "")
    lines = [
        f"{summary['command']}: {where}: {summary['rows']} rows in {summary['duration_s']:.1f} s"
    ]
    width = max((len(k) for k in summary["outcomes"]), default=0)
    for outcome, n in summary["outcomes"].items():
        if n:
            lines.append(f"  {outcome:<{width}}  {n:>8}")
    codes = summary.get("problems_by_code") or {}
    if codes:
        lines.append("problems: " + ", ".join(f"{code} {n}" for code, n in codes.items()))
    if summary.get("unmapped_columns"):
        cols = ", ".join(repr(c) for c in summary["unmapped_columns"])
        lines.append(f"columns not sent (unmapped; map or 'ignore' them in a mapping file): {cols}")
    reports = summary.get("reports") or {}
    if reports:
        folder = Path(next(iter(reports.values()))).parent
        names = ", ".join(Path(p).name for p in reports.values())
        lines.append(f"reports: {folder}/ ({names})")
    return "\n".join(lines)


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
        stream = click.get_binary_stream("stdout")
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


def run() -> None:
    """Entry point of the ``leadsync`` console script."""
    main(prog_name="leadsync")


if __name__ == "__main__":  # pragma: no cover
    run()
