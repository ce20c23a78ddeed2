"""`leadsync demo`: the README's first command, end to end and offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_demo_syncs_the_sample_through_faults_and_rerun_sends_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "leadsync", "demo", "--report-dir", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "  updated             191" in out
    assert "  invalid               8" in out
    assert "questionnaire answers applied twice: 0" in out
    assert "191 rows unchanged, 0 updates sent" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["outcomes"]["updated"] == 191 and summary["rows"] == 200
    assert summary["exit_code"] == 1  # the sample's deliberate mistakes


def test_demo_with_a_report_dir_writes_nowhere_else(tmp_path: Path) -> None:
    """Its reports, the re-run's reports and the journal all go into --report-dir: the
    working folder and the temporary folder stay empty."""
    import os

    work, tmp, out = tmp_path / "work", tmp_path / "tmp", tmp_path / "out"
    work.mkdir()
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "leadsync", "demo", "--report-dir", str(out)],
        cwd=work,
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(work.iterdir()) == [] and list(tmp.iterdir()) == []
    assert (out / "re-run" / "summary.json").is_file() and (out / "journal.sqlite").is_file()
    rerun = json.loads((out / "re-run" / "summary.json").read_text())
    assert rerun["outcomes"]["unchanged"] == 191
