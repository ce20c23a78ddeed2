"""The API key never shows: not in output, logs, reports, the journal, or a --debug traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from leadsync.sandbox import Sandbox, SandboxConfig
from tests.conftest import write_csv

Cli = Callable[..., Result]
KEY = "k3y-that-must-never-show-0451"


def test_every_command_keeps_the_key_to_itself(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "a.csv",
        [["id", "first_name", "last_name"], ["1001", "A", "B"], ["1002", "C", "x" * 60]],
    )
    with Sandbox(SandboxConfig(api_key=KEY, leads=["1001", "1002"])) as sb:
        env = {
            "LEADSYNC_API_KEY": KEY,
            "LEADSYNC_BASE_URL": sb.base_url,
            "LEADSYNC_JOURNAL": str(tmp_path / "journal.sqlite"),
        }
        results = [
            cli("validate", src, "--report-dir", tmp_path / "v", "--check-offices", env=env),
            cli("sync", src, "--report-dir", tmp_path / "s", "--json", env=env),
            cli(
                "-v", "--log-format", "json", "sync", src, "--report-dir", tmp_path / "s2", env=env
            ),
            cli("plan", src, "--live", env=env),
            cli("plan", src, env=env),
            cli("runs", env=env),
            cli("runs", "--show", "last", env=env),
            cli("offices", "--json", env=env),
            cli("--debug", "sync", tmp_path / "missing.csv", env=env),
            cli("--debug", "sync", src, "--base-url", "http://example.com/api", env=env),
            cli("sync", src, env={**env, "LEADSYNC_API_KEY": "wrong" + KEY}),
        ]
    assert [r.exit_code for r in results] == [1, 1, 1, 1, 1, 0, 0, 0, 2, 2, 3]  # plan: 1 invalid
    assert "Traceback" in results[8].stderr  # --debug shows the traceback ...
    for r in results:
        assert KEY not in r.stdout and KEY not in r.stderr  # ... but never the key
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
