"""Installable like a real tool: packaged data, templates, version, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from leadsync.data import packaged, sample_path
from tests.conftest import ROOT

Cli = Callable[..., Result]


@pytest.mark.parametrize(("top", "folder"), [("sample_data", "sample"), ("templates", "templates")])
def test_the_packaged_copies_match_the_source_tree(top: str, folder: str) -> None:
    """sample_data/ and templates/ (what a checkout shows) and leadsync/data/ (what a wheel
    ships) hold the same files, byte for byte; generate.py is the tree's own tool."""
    tree = {p.name: p.read_bytes() for p in (ROOT / top).iterdir() if p.suffix != ".py"}
    shipped = {f.name: f.read_bytes() for f in packaged(folder)}
    assert tree.keys() == shipped.keys() and tree == shipped


def test_the_sample_is_found_inside_the_package_from_any_folder(tmp_path: Path) -> None:
    path = sample_path()
    assert path.is_file() and "leadsync" in path.parts and path.parts[-2] == "sample"
    probe = "from leadsync.demo import find_sample; print(find_sample())"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert Path(found.stdout.strip()) == path


def test_templates_list_and_copy(cli: Cli, tmp_path: Path) -> None:
    listed = cli("templates").stdout.split()
    assert listed == sorted(p.name for p in (ROOT / "templates").iterdir())
    assert cli("templates", "--copy", tmp_path / "mine").exit_code == 0
    copied = tmp_path / "mine" / "mapping.example.toml"
    assert copied.read_bytes() == (ROOT / "templates" / "mapping.example.toml").read_bytes()
    again = cli("templates", "--copy", tmp_path / "mine")
    assert (
        again.exit_code == 2
        and "already exists: choose another folder or add --force" in again.stderr
    )
    assert cli("templates", "--copy", tmp_path / "mine", "--force").exit_code == 0


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete "), ("zsh", "compdef"), ("fish", "complete --no-files --command leadsync")],
)
def test_shell_completion_scripts(shell: str, marker: str) -> None:
    env = {**os.environ, "_LEADSYNC_COMPLETE": f"{shell}_source"}
    out = subprocess.run(
        [sys.executable, "-c", "from leadsync.cli import run; run()"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and marker in out.stdout


def test_bash_completion_completes_a_command() -> None:
    env = {
        **os.environ,
        "_LEADSYNC_COMPLETE": "bash_complete",
        "COMP_WORDS": "leadsync sy",
        "COMP_CWORD": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", "from leadsync.cli import run; run()"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.stdout.split() == ["plain,sync"]
