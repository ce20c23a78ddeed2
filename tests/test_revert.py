"""`leadsync revert RUN` (issue 18) against the sandbox over real HTTP: before-values from
--snapshot and from the journal, conflicts, what cannot be undone, kill -9, revert of a
revert, and what `runs --show` and `--dry-run` say."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from click.testing import Result

import leadsync
from leadsync.config import Config
from leadsync.revert import PLAN_FILE, revert
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import read_csv_report, wait_until_sandbox, write_csv

Cli = Callable[..., Result]
N = 20
LEADS = [str(1000 + i) for i in range(N)]
_VOLATILE = ("updated_at", "questionnaire")  # a timestamp; answers cannot be removed


def seeded(tmp_path: Path) -> Path:
    """Leads whose every field the sync changes had a value before (a revert can put back
    only what was there)."""
    leads = [
        {"id": lead, "first_name": f"Old{i}", "last_name": f"Name{i}", "status": "New",
         "office_id": 1214, "meta": {"source": "portal"}}
        for i, lead in enumerate(LEADS)
    ]  # fmt: skip
    path = tmp_path / "leads.json"
    path.write_text(json.dumps(leads), encoding="utf-8")
    return path


def bad_export(tmp_path: Path) -> Path:
    """The wrong export: statuses shifted, the wrong office filled down, an answer."""
    rows: list[list[Any]] = [["id", "first_name", "last_name", "status", "office_id",
                              "meta: source", "questionnaire: Budget?"]]  # fmt: skip
    for i, lead in enumerate(LEADS):
        rows.append([lead, f"New{i}", f"Name{i}", "Lost", 1213, "csv", "£1" if i < 3 else ""])
    return write_csv(tmp_path / "bad.csv", rows)


def state(sb: Sandbox) -> dict[str, dict[str, Any]]:
    return {
        lead: {k: v for k, v in (sb.lead(lead) or {}).items() if k not in _VOLATILE}
        for lead in LEADS
    }


def by_key(report_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Every line of a revert's reports by (lead, field); a line twice fails the test."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for name in ("successes.csv", "failures.csv"):
        for r in read_csv_report(report_dir / name):
            key = (r["Lead ID"], r["Field changed"])
            assert seen.get(key, r)["outcome"] == r["outcome"], key
            seen[key] = r
    return seen


def patch_by_hand(sb: Sandbox, lead: str, **fields: Any) -> None:
    answer = requests.patch(
        f"{sb.base_url}/leads/{lead}",
        json={"first_name": "Hand", "last_name": "Made", **fields},
        headers={"X-API-KEY": DEFAULT_KEY},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_revert_puts_every_untouched_lead_back_exactly_and_leaves_the_touched_alone(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(lead_file=seeded(tmp_path))) as sb:
        before = state(sb)
        cfg = Config(base_url=sb.base_url, snapshot=True, backoff_initial=0.01)
        bad = leadsync.sync(bad_export(tmp_path), cfg, tmp_path / "o1", api_key=DEFAULT_KEY,
                            journal=journal)  # fmt: skip
        assert bad.summary["outcomes"]["updated"] == N
        patch_by_hand(sb, "1005", status="Valued")  # two leads changed since, by hand
        patch_by_hand(sb, "1006", office_id=1215)
        touched = {lead: copy.deepcopy(sb.lead(lead)) for lead in ("1005", "1006")}
        result = revert("last", cfg, tmp_path / "o2", api_key=DEFAULT_KEY, journal=journal)
        after = state(sb)
        questionnaires = {lead: sb.lead(lead)["questionnaire"] for lead in LEADS[:3]}  # type: ignore[index]
    for lead in LEADS:
        if lead not in touched:
            assert after[lead] == before[lead], lead  # every field exactly as before the run
    lines = by_key(tmp_path / "o2")
    assert lines["1005", "status"]["outcome"] == "conflict"
    assert lines["1005", "status"]["code"] == "changed_since"
    assert lines["1006", "office_id"]["outcome"] == "conflict"
    # a touched lead's other fields still held the run's values: those are put back
    assert lines["1005", "office_id"]["outcome"] == "reverted"
    assert after["1005"]["status"] == "Valued" and after["1006"]["office_id"] == 1215
    for lead in LEADS[:3]:
        assert lines[lead, "questionnaire"]["outcome"] == "not_revertible"
        assert lines[lead, "questionnaire"]["code"] == "appended"
        assert questionnaires[lead] == [["Budget?", "£1"]]  # cannot be removed, and said so
    assert int(result.exit_code) == 1  # conflicts and answers are listed: attention needed
    # by hand, both leads got a new first name too (the run changed it: a conflict as well;
    # their last names the run left as they were, so they are not the revert's business)
    assert result.summary["outcomes"]["conflict"] == 4
    assert ("1005", "last_name") not in lines
    assert (tmp_path / "o2" / PLAN_FILE).is_file()


def test_a_journal_before_value_reverts_without_snapshot_and_a_blank_one_is_listed(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.sqlite"
    good = write_csv(tmp_path / "good.csv", [["id", "first_name", "last_name", "status"],
                                              ["1000", "A", "B", "Contacted"]])  # fmt: skip
    wrong = write_csv(tmp_path / "wrong.csv", [["id", "first_name", "last_name", "status",
                                                "next_action_date"],
                                               ["1000", "A", "B", "Lost", "2026-01-05"]])  # fmt: skip
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url)  # no --snapshot: the journal knows "Contacted"
        leadsync.sync(good, cfg, tmp_path / "o1", api_key=DEFAULT_KEY, journal=journal)
        bad = leadsync.sync(wrong, cfg, tmp_path / "o2", api_key=DEFAULT_KEY, journal=journal)
        result = revert("last", cfg, tmp_path / "o3", api_key=DEFAULT_KEY, journal=journal)
        lead = sb.lead("1000")
    lines = by_key(tmp_path / "o3")
    assert lines["1000", "status"]["outcome"] == "reverted" and lead["status"] == "Contacted"  # type: ignore[index]
    # the journal had never seen next_action_date: its value before is not known
    assert lines["1000", "next_action_date"]["code"] == "before_unknown"
    assert result.summary["reverts"] == bad.summary["run_id"]
    assert result.summary["outcomes"]["reverted"] == 1


def test_kill_9_during_a_revert_then_a_re_run_ends_the_same_and_applies_nothing_twice(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(lead_file=seeded(tmp_path))) as sb:
        before = state(sb)
        cfg = Config(base_url=sb.base_url, snapshot=True)
        leadsync.sync(bad_export(tmp_path), cfg, tmp_path / "o1", api_key=DEFAULT_KEY,
                      journal=journal)  # fmt: skip
        sb.config.latency = 0.15
        env = {**os.environ, "LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}
        cmd = [sys.executable, "-m", "leadsync", "revert", "last", "--journal", str(journal),
               "--concurrency", "2"]  # fmt: skip
        proc = subprocess.Popen([*cmd, "--report-dir", str(tmp_path / "r1")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until_sandbox(sb, "applied_requests", N + 4, proc)  # the sync's N, then 4 reverts
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        sb.config.latency = 0.0
        # `last` is now the crashed revert: the re-run names the sync's run
        sync_run = json.loads((tmp_path / "o1" / "summary.json").read_text())["run_id"]
        cmd[4] = sync_run
        again = subprocess.run([*cmd, "--report-dir", str(tmp_path / "r2")], env=env,
                               capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        after = state(sb)
        applied = sb.stats()["applied"]
    assert again.returncode == 1, again.stdout + again.stderr  # the answers are listed
    assert after == before  # the same end state as an uninterrupted revert
    assert all(applied[lead]["count"] == 2 for lead in LEADS), applied  # sync + one revert
    lines = by_key(tmp_path / "r2")
    assert {lines[lead, "status"]["outcome"] for lead in LEADS} == {"reverted"}


def test_a_revert_is_itself_revertible(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(lead_file=seeded(tmp_path))) as sb:
        cfg = Config(base_url=sb.base_url, snapshot=True)
        leadsync.sync(bad_export(tmp_path), cfg, tmp_path / "o1", api_key=DEFAULT_KEY,
                      journal=journal)  # fmt: skip
        wrong = state(sb)
        first = revert("last", cfg, tmp_path / "r1", api_key=DEFAULT_KEY, journal=journal)
        back = revert(first.summary["run_id"], cfg, tmp_path / "r2", api_key=DEFAULT_KEY,
                      journal=journal)  # fmt: skip
        assert state(sb) == wrong  # the revert undone: the run's values again
    assert back.summary["outcomes"]["reverted"] == first.summary["outcomes"]["reverted"]


def test_dry_run_and_runs_show_say_what_a_revert_would_do(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox(SandboxConfig(lead_file=seeded(tmp_path))) as sb:
        cfg = Config(base_url=sb.base_url, snapshot=True)
        leadsync.sync(bad_export(tmp_path), cfg, tmp_path / "o1", api_key=DEFAULT_KEY,
                      journal=journal)  # fmt: skip
        requests_before = sb.stats()["requests"]
        dry = cli("revert", "last", "--dry-run", "--journal", journal, "--fields", "status")
        shown = cli("runs", "--show", "last", "--journal", journal)
        assert sb.stats()["requests"] == requests_before  # a dry run sends nothing
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert lines[0] == "lead 1000  status: New <- Lost   (before from the snapshot)"
    assert lines[-1].startswith(f"{N} line(s) of run ") and lines[-1].endswith("nothing was sent")
    assert (
        f"revertible: {N * 4} field(s) of {N} lead(s); not revertible: 3 answers appended "
        "(if nobody has changed them since)"
    ) in shown.stdout


def test_a_run_that_created_leads_lists_them_and_deletes_none(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    src = write_csv(tmp_path / "new.csv", [["type", "first_name", "last_name", "email", "postcode"],
                                            ["vendor", "A", "B", "a@example.com", "BS1 1AA"]])  # fmt: skip
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url, create=True, check_offices=False)
        leadsync.sync(src, cfg, tmp_path / "o", api_key=DEFAULT_KEY, journal=journal)
        result = revert("last", cfg, tmp_path / "r", api_key=DEFAULT_KEY, journal=journal)
        assert sb.stats()["created"] == 1 and len(sb.leads) == 9300 + 1
    [line] = read_csv_report(tmp_path / "r" / "failures.csv")
    assert (line["outcome"], line["code"]) == ("not_revertible", "created_by_run")
    assert int(result.exit_code) == 1
