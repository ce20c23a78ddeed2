"""The journal: change detection, crash-safe resume, the lock, history and retries."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import Result

import leadsync
from leadsync.config import Config
from leadsync.journal import Journal
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import (
    kill_then_resume,
    lead_log,
    read_csv_report,
    wait_until_sandbox,
    write_csv,
)

Cli = Callable[..., Result]
HEADER = ["id", "first_name", "last_name", "status", "office_id", "questionnaire: Budget?"]


def export(
    path: Path, n: int, *, start: int = 1000, changes: dict[int, dict[str, str]] | None = None
) -> Path:
    rows: list[list[Any]] = [HEADER]
    for i in range(n):
        row = {
            "id": str(start + i),
            "first_name": f"F{i}",
            "last_name": f"L{i}",
            "status": "New",
            "office_id": "1213",
            "questionnaire: Budget?": f"£{i}k" if i % 2 == 0 else "",
        }
        row.update((changes or {}).get(i, {}))
        rows.append([row[h] for h in HEADER])
    return write_csv(path, rows)


def sync(sb: Sandbox, src: Path, out: Path, journal: Path, **kw: Any) -> leadsync.RunResult:
    cfg = Config(
        base_url=sb.base_url, backoff_initial=0.01, backoff_max=0.2, **kw.pop("config", {})
    )
    return leadsync.sync(src, cfg, out, api_key=DEFAULT_KEY, journal=journal, **kw)


def test_same_file_twice_sends_nothing_and_changes_send_only_what_changed(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(require_names=False)) as sb:  # an account with partial updates
        first = sync(sb, export(tmp_path / "a.csv", 20), tmp_path / "o1", journal)
        assert first.summary["outcomes"]["updated"] == 20
        again = sync(sb, export(tmp_path / "a.csv", 20), tmp_path / "o2", journal)
        assert again.exit_code == 0
        assert again.summary["outcomes"]["unchanged"] == 20
        assert again.summary["sending"]["requests"] == 1  # the office check; no update
        before = len(lead_log(sb))
        changes = {
            1: {"status": "Contacted"},
            4: {"office_id": "1214"},
            7: {"last_name": "New-Name"},
            10: {"questionnaire: Budget?": "£999k"},
            13: {"status": "Lost", "office_id": "1215"},
        }
        changed = sync(
            sb,
            export(tmp_path / "b.csv", 20, changes=changes),
            tmp_path / "o3",
            journal,
            config={"require_names": False},
        )
        sent = lead_log(sb)[before:]
        stats = sb.stats()
    assert changed.summary["outcomes"]["updated"] == 5
    assert changed.summary["outcomes"]["unchanged"] == 15
    assert {e["lead"]: e["body"] for e in sent} == {
        "1001": {"status": "Contacted"},
        "1004": {"office_id": 1214},
        "1007": {"last_name": "New-Name"},
        "1010": {"questionnaire": [["Budget?", "£999k"]]},
        "1013": {"status": "Lost", "office_id": 1215},
    }
    assert stats["duplicate_questionnaire_pairs"] == 0
    ok = {r["lead_id"]: r for r in read_csv_report(tmp_path / "o3" / "successes.csv")}
    assert ok["1004"]["fields_sent"] == "office_id" and ok["1000"]["outcome"] == "unchanged"


def test_required_names_go_along_with_any_change(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox() as sb:
        sync(sb, export(tmp_path / "a.csv", 3), tmp_path / "o1", journal)
        before = len(lead_log(sb))
        sync(
            sb,
            export(tmp_path / "b.csv", 3, changes={1: {"status": "Lost"}}),
            tmp_path / "o2",
            journal,
        )
        [entry] = lead_log(sb)[before:]
    assert entry["body"] == {"first_name": "F1", "last_name": "L1", "status": "Lost"}


def test_full_sends_everything_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox() as sb:
        sync(sb, export(tmp_path / "a.csv", 4), tmp_path / "o1", journal)
        result = sync(sb, export(tmp_path / "a.csv", 4), tmp_path / "o2", journal, full=True)
        stats = sb.stats()
    assert result.summary["outcomes"]["updated"] == 4
    assert stats["applied"]["1000"]["count"] == 2
    assert stats["duplicate_questionnaire_pairs"] == 2  # what --full warns about


def test_kill_9_mid_run_then_resume_applies_every_lead_once(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    src = export(tmp_path / "a.csv", 60)
    with Sandbox(SandboxConfig(latency=0.15)) as sb:
        args = [str(src), "--journal", str(journal), "--concurrency", "4"]
        killed_at, resumed = kill_then_resume(sb, args, tmp_path, "applied_requests", 15)
        assert killed_at < 60
        stats = sb.stats()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(stats["applied"]) == [str(1000 + i) for i in range(60)]  # every lead applied
    assert all(a["count"] == 1 for a in stats["applied"].values()), stats["applied"]  # none twice
    assert stats["duplicate_questionnaire_pairs"] == 0
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["outcomes"]["updated"] + summary["outcomes"]["unchanged"] == 60
    assert summary["outcomes"]["unchanged"] >= killed_at - 4  # confirmed rows were skipped
    runs = Journal(journal).runs()
    assert [r["status"] for r in runs] == ["done", "crashed"]


def test_a_second_run_on_the_same_journal_exits_3_and_a_dead_runs_lock_is_taken(
    tmp_path: Path, cli: Cli
) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(latency=0.3)) as sb:
        env = {**os.environ, "LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}
        src = export(tmp_path / "a.csv", 40)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadsync",
                "sync",
                str(src),
                "--journal",
                str(journal),
                "--report-dir",
                str(tmp_path / "o1"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_sandbox(sb, "requests", 2, proc)
        second = cli(
            "sync",
            src,
            "--journal",
            journal,
            "--report-dir",
            tmp_path / "o2",
            env={"LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url},
        )
        assert second.exit_code == 3
        assert second.stderr.startswith(
            f"leadsync: error: another run is using the journal {journal} (pid {proc.pid} on "
        )
        assert second.stderr.rstrip().endswith("wait for it to finish, or use another --journal")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        third = cli(
            "sync",
            src,
            "--journal",
            journal,
            "--report-dir",
            tmp_path / "o3",
            env={"LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url},
        )
        assert third.exit_code == 0, third.output
        stats = sb.stats()
    assert stats["duplicate_questionnaire_pairs"] == 0
    assert all(a["count"] == 1 for a in stats["applied"].values())


def test_runs_lists_history_and_retry_failed_sends_only_failures(tmp_path: Path, cli: Cli) -> None:
    journal = tmp_path / "j.sqlite"
    src = export(tmp_path / "a.csv", 10)
    with Sandbox(SandboxConfig(script=("503",) * 4)) as sb:
        env = {"LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}
        # one attempt per row: the first four rows sent meet the scripted 503s and fail
        cfg = Config(base_url=sb.base_url, max_attempts=1, concurrency=1)
        result = leadsync.sync(src, cfg, tmp_path / "o1", api_key=DEFAULT_KEY, journal=journal)
        assert result.summary["outcomes"]["failed"] == 4
        listing = cli("runs", "--journal", journal, env=env)
        assert listing.exit_code == 0
        assert result.summary["run_id"] in listing.stdout and "failed 4" in listing.stdout
        shown = cli("runs", "--journal", journal, "--show", "last", env=env)
        assert shown.stdout.count("failed") >= 4 and "HTTP 503" in shown.stdout
        before = len(lead_log(sb))
        retry = cli(
            "sync",
            src,
            "--journal",
            journal,
            "--report-dir",
            tmp_path / "o2",
            "--retry-failed",
            result.summary["run_id"][:12],
            "--json",
            env=env,
        )
        sent = lead_log(sb)[before:]
    assert retry.exit_code == 0, retry.output
    summary = json.loads(retry.stdout)
    assert summary["retry_of"] == result.summary["run_id"]
    assert summary["outcomes"]["updated"] == 4 and summary["rows"] == 4
    assert summary["rows_left_out"] == 6
    assert sorted(e["lead"] for e in sent) == ["1000", "1001", "1002", "1003"]


def test_retry_failed_takes_match_by_rows_whose_lookup_or_send_failed(
    tmp_path: Path, cli: Cli
) -> None:
    journal = tmp_path / "j.sqlite"
    rows = [
        ["id", "email", "first_name", "last_name"],
        ["", "lead1000@example.test", "A", "B"],  # found; its PATCH meets the scripted 503
        ["", "lead1001@example.test", "C", "D"],  # found and updated
        ["", "nobody@example.test", "E", "F"],  # no such lead: invalid, not for a retry
        ["1002", "", "G", "H"],  # an id: updated
        ["", "lead1003@example.test", "I", "J"],  # its lookup meets the 503s below
    ]
    src = write_csv(tmp_path / "a.csv", rows)
    cfg = Config(match_by="email", check_offices=False, max_attempts=1, concurrency=1)
    unanswered = SandboxConfig(script=("503",), lookup_503=("lead1003@example.test",))
    with Sandbox(unanswered) as sb:
        cfg = replace(cfg, base_url=sb.base_url)
        first = leadsync.sync(src, cfg, tmp_path / "o1", api_key=DEFAULT_KEY, journal=journal)
        assert first.exit_code == 1
        failed = {r["row"]: r["code"] for r in read_csv_report(tmp_path / "o1" / "failures.csv")}
        assert failed == {"2": "gave_up", "4": "no_single_match", "6": "lookup_failed"}
        shown = cli("runs", "--journal", journal, "--show", "last")
        assert "  1 --match-by value(s) could not be looked up: their rows are in failures.csv" in (
            shown.stdout
        )
        sb.config.lookup_503 = ()
        before = len(sb.requests_log())
        retry = leadsync.sync(
            src, cfg, tmp_path / "o2", api_key=DEFAULT_KEY, journal=journal, retry_failed="last"
        )
        asked = [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in sb.requests_log()[before:]]
    assert retry.exit_code == 0, retry.summary
    assert retry.summary["rows_left_out"] == 3
    assert retry.summary["sending"]["lookups"] == 2 and retry.summary["sending"]["requests"] == 4
    done = {r["row"]: r["lead_id"] for r in read_csv_report(tmp_path / "o2" / "successes.csv")}
    assert done == {"2": "1000", "6": "1003"}
    assert sorted(asked) == [
        ("GET", "leads"),
        ("GET", "leads"),
        ("PATCH", "1000"),
        ("PATCH", "1003"),
    ]


def test_failures_csv_feeds_back_in_as_is(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    rows = [
        HEADER,
        ["1000", "A" * 51, "", "New", "1213", "=x"],
        ["1001", "B", "C", "New", "1213", ""],
    ]
    src = write_csv(tmp_path / "a.csv", rows)
    with Sandbox() as sb:
        first = sync(sb, src, tmp_path / "o1", journal)
        assert first.summary["outcomes"] == {
            **first.summary["outcomes"],
            "invalid": 1,
            "updated": 1,
        }
        failures = tmp_path / "o1" / "failures.csv"
        assert len(read_csv_report(failures)) == 2  # one line per problem, one row
        again = sync(sb, failures, tmp_path / "o2", journal)
        assert again.summary["rows"] == 1 and again.summary["unmapped_columns"] == []
        assert again.summary["outcomes"]["invalid"] == 1  # still wrong, nothing doubled
        fixed = read_csv_report(failures)[0]
        fixed["first_name"], fixed["last_name"] = "Ann", "Lee"
        write_csv(tmp_path / "fixed.csv", [list(fixed), list(fixed.values())])
        third = sync(sb, tmp_path / "fixed.csv", tmp_path / "o3", journal)
        body = lead_log(sb)[-1]["body"]
    assert third.exit_code == 0 and third.summary["outcomes"]["updated"] == 1
    assert body["questionnaire"] == [["Budget?", "=x"]]  # the neutralising quote is gone


def test_journal_is_private_and_records_before_and_after(tmp_path: Path) -> None:
    journal = tmp_path / "state" / "j.sqlite"
    with Sandbox() as sb:
        sync(sb, export(tmp_path / "a.csv", 2), tmp_path / "o1", journal)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    db = sqlite3.connect(journal)
    states = db.execute(
        "SELECT lead_id, state, http_status FROM attempts ORDER BY lead_id"
    ).fetchall()
    assert states == [("1000", "updated", 200), ("1001", "updated", 200)]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    pairs = db.execute("SELECT lead_id, question, answer FROM lead_pairs").fetchall()
    assert pairs == [("1000", "Budget?", "£0k")]
