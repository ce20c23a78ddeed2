"""The fault matrix: for each kind of trouble, nothing lost, nothing doubled, exit code right.

Each scenario runs a real sync (journal on) against the sandbox over loopback and then
checks the invariants: every input row has exactly one outcome; every row reported
updated was applied; no questionnaire answer was applied twice; the journal's confirmed
answers are all on the leads; the exit code matches the outcomes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.config import Config
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import read_csv_report, write_csv

ROWS = 40


def export(path: Path) -> Path:
    rows: list[list[Any]] = [["id", "first_name", "last_name", "status", "questionnaire: Budget?"]]
    for i in range(ROWS):
        rows.append([str(1000 + i), f"F{i}", f"L{i}", "Contacted", f"£{i}k" if i % 2 else ""])
    return write_csv(path, rows)


def check_invariants(
    sb: Sandbox, result: leadsync.RunResult, out: Path, journal: Path
) -> Counter[str]:
    seen: dict[int, str] = {}
    for name in ("successes.csv", "failures.csv"):
        for r in read_csv_report(out / name):
            assert seen.setdefault(int(r["row"]), r["outcome"]) == r["outcome"]
    assert sorted(seen) == list(range(2, ROWS + 2)), "every row, exactly one outcome"
    stats = sb.stats()
    updated = {
        r["lead_id"] for r in read_csv_report(out / "successes.csv") if r["outcome"] == "updated"
    }
    assert updated <= set(stats["applied"]), "a row reported updated was not applied"
    assert stats["duplicate_questionnaire_pairs"] == 0, "an answer was applied twice"
    db = sqlite3.connect(journal)
    for lead, q, a in db.execute("SELECT lead_id, question, answer FROM lead_pairs"):
        lead_now = sb.lead(lead)
        assert lead_now is not None and [q, a] in lead_now["questionnaire"], (
            "journal ahead of the server"
        )
    counts = Counter(seen.values())
    if result.summary["aborted"]:
        assert result.exit_code == 3
    elif counts["updated"] == ROWS:
        assert result.exit_code == 0
    else:
        assert result.exit_code == 1
    return counts


def run(sb: Sandbox, tmp_path: Path, **config: Any) -> tuple[leadsync.RunResult, Path, Path]:
    out, journal = tmp_path / "out", tmp_path / "journal.sqlite"
    cfg = Config(base_url=sb.base_url, backoff_initial=0.05, backoff_max=1.0, **config)
    result = leadsync.sync(
        export(tmp_path / "in.csv"), cfg, out, api_key=DEFAULT_KEY, journal=journal
    )
    return result, out, journal


@pytest.mark.parametrize(
    ("name", "sandbox", "config"),
    [
        ("429 storm", SandboxConfig(rate_limit=8, burst=1, seed=1), {"start_rate": 40}),
        (
            "429 storm without headers",
            SandboxConfig(rate_limit=8, burst=1, rate_headers="none", retry_after=False, seed=1),
            {"start_rate": 40},
        ),
        ("503 burst", SandboxConfig(script=("503",) * 12, seed=2), {}),
        ("500 after applying", SandboxConfig(fail_500_after=0.25, seed=3), {}),
        ("dropped after applying", SandboxConfig(drop_after=0.25, seed=4), {}),
        (
            "stall after applying",
            SandboxConfig(stall_after=0.15, stall_seconds=1.0, seed=5),
            {"read_timeout": 0.3},
        ),
        (
            "everything at once",
            SandboxConfig(
                fail_503=0.1,
                fail_500_after=0.1,
                drop_after=0.1,
                stall_after=0.05,
                stall_seconds=1.0,
                rate_limit=30,
                burst=2,
                seed=6,
            ),
            {"read_timeout": 0.3},
        ),
    ],
)
def test_fault(name: str, sandbox: SandboxConfig, config: dict[str, Any], tmp_path: Path) -> None:
    with Sandbox(sandbox) as sb:
        result, out, journal = run(sb, tmp_path, **config)
        counts = check_invariants(sb, result, out, journal)
    assert counts["updated"] >= ROWS - 4, (name, counts)


def test_server_killed_and_restarted_mid_run(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(latency=0.02)) as sb:
        restarted = threading.Event()

        def kill_when_busy() -> None:
            while sb.stats()["applied_requests"] < 10:
                threading.Event().wait(0.01)
            sb.restart(down_for=0.5)
            restarted.set()

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        result, out, journal = run(sb, tmp_path)
        killer.join(timeout=30)
        assert restarted.is_set()
        counts = check_invariants(sb, result, out, journal)
    assert counts["updated"] == ROWS, counts


def test_rerun_after_faults_completes_without_doubles(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(fail_500_after=0.3, drop_after=0.2, seed=9)) as sb:
        first, _, journal = run(sb, tmp_path, max_attempts=2)
        cfg = Config(base_url=sb.base_url, backoff_initial=0.05)
        sb.config.fail_500_after = sb.config.drop_after = 0.0  # the server recovers
        second = leadsync.sync(
            tmp_path / "in.csv", cfg, tmp_path / "out2", api_key=DEFAULT_KEY, journal=journal
        )
        stats = sb.stats()
    assert second.exit_code == 0, second.summary["outcomes"]
    assert sorted(stats["applied"]) == [str(1000 + i) for i in range(ROWS)]
    assert stats["duplicate_questionnaire_pairs"] == 0
    for lead, applied in stats["applied"].items():
        expected = 1 if int(lead) % 2 else 0
        assert applied["questionnaire_len"] == expected, lead
    again = second.summary["outcomes"]
    assert again["updated"] + again["unchanged"] == ROWS  # unknown rows were read back, not resent
    assert first.summary["outcomes"]["updated"] < ROWS  # the faults did bite the first run
