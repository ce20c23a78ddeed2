"""``leadsync ui``: the local web app (the click side; the app is :mod:`leadsync.ui`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from leadsync.cli.common import journal_option, journal_path, key_file_option, mapping_option
from leadsync.errors import InputError


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 (default: a free one).",
)
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1, 4096),
    default=256,
    show_default=True,
    help="The biggest file the app takes.",
)
@mapping_option
@journal_option
@key_file_option
def ui(
    port: int,
    no_browser: bool,
    max_upload_mb: int,
    mapping: Path | None,
    journal: Path | None,
    api_key_file: Path | None,
) -> int:
    """A web app on this computer for checking, mapping and syncing a spreadsheet.

    Serves on 127.0.0.1 only and opens the browser at an address with a one-time
    token (it is printed too). The API key comes from $LEADSYNC_API_KEY or
    --api-key-file, or is typed into the app and kept in its memory only. Uploaded
    files stay in a private folder that is removed when the app stops (Ctrl-C).

    \b
    Example:
      leadsync ui
      leadsync ui --mapping mapping.toml --port 8765 --no-browser
    """
    from leadsync.ui import serve

    try:
        serve(
            os.environ,
            port=port,
            open_browser=not no_browser,
            announce=_announce,
            mapping=mapping,
            journal=journal_path(journal),
            key_file=api_key_file,
            max_upload=max_upload_mb << 20,
        )
    except KeyboardInterrupt:  # Ctrl-C is how the app is closed: not an interruption
        click.echo("leadsync ui: stopped; the uploaded files are removed", err=True)
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise InputError(
                f"port {port} is in use: pick another with --port, or leave it out"
            ) from None
        raise
    return 0


def _announce(text: str) -> None:
    # the address goes to stdout (a script starting the app reads it there), the rest
    # to stderr with the other messages
    click.echo(text, err=not text.startswith("leadsync ui: open "))
