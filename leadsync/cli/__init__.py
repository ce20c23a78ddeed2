"""Command line: a thin click layer over the library (spec §7).

One error boundary (:class:`_Boundary`) turns every :class:`LeadsyncError` into one line
on stderr and its exit code; a traceback appears only with ``--debug``. Commands return
their exit code; the boundary exits with it.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import click

from leadsync import __version__, defaults
from leadsync.cli import commands, tools
from leadsync.cli import sync as sync_command
from leadsync.cli import ui as ui_command
from leadsync.cli.common import echo_json_error, log, redacted, traceback_if_debug
from leadsync.errors import ExitCode, LeadsyncError, shown


class _Boundary(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            code = super().invoke(ctx)
        except LeadsyncError as exc:
            traceback_if_debug(ctx)
            message = redacted(ctx, shown(str(exc), 2000))
            log("error", message, exit_code=int(exc.exit_code))
            echo_json_error(ctx, message, int(exc.exit_code))
            ctx.exit(int(exc.exit_code))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("leadsync: interrupted", err=True)
            echo_json_error(ctx, "interrupted", int(ExitCode.ABORTED))
            ctx.exit(int(ExitCode.ABORTED))
        except BrokenPipeError:
            # the reader went away (`leadsync plan ... | head`): not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as exc:
            # the machine's doing (a full disk, a folder gone), not a bug: say what, stop
            traceback_if_debug(ctx)
            where = f": {exc.filename}" if exc.filename else ""
            message = redacted(ctx, f"cannot go on: {exc.strerror or exc}{where}")
            log("error", message, exit_code=int(ExitCode.ABORTED))
            echo_json_error(ctx, message, int(ExitCode.ABORTED))
            ctx.exit(int(ExitCode.ABORTED))
        except Exception as exc:
            traceback_if_debug(ctx)
            message = (
                f"internal error: {type(exc).__name__}: {redacted(ctx, str(exc))} "
                "(this is a bug; run again with --debug for the traceback)"
            )
            click.echo(f"leadsync: {message}", err=True)
            echo_json_error(ctx, message, int(ExitCode.INTERNAL))
            ctx.exit(int(ExitCode.INTERNAL))
        else:
            if isinstance(code, int) and code:  # a command returns its exit code
                ctx.exit(code)
            return code


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-V",
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _, value: _print_version(ctx) if value else None,
    help="Show the version, with Python's and the key libraries' (for bug reports).",
)
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


def _print_version(ctx: click.Context) -> None:
    """``leadsync --version``: read from the installed packages' metadata, so it imports
    none of them (it stays as fast as --help)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    click.echo(f"leadsync, version {__version__}")
    click.echo(f"Python {platform.python_version()} ({platform.system()} {platform.machine()})")
    for name in _REPORTED:
        try:
            click.echo(f"{name} {version(name)}")
        except PackageNotFoundError:
            click.echo(f"{name} (not installed)")
    ctx.exit(0)


_REPORTED = ("pandas", "pyarrow", "numpy", "python-calamine", "openpyxl", "xlsxwriter",
             "requests", "urllib3", "tenacity", "click", "filelock")  # fmt: skip


for _command in (
    commands.validate,
    sync_command.sync,
    commands.forget,
    commands.revert,
    commands.plan,
    commands.runs,
    commands.offices,
    tools.demo,
    tools.template,
    tools.templates,
    tools.sandbox,
    ui_command.ui,
):
    main.add_command(_command)


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
