"""Operator features over the sandbox: offices, plan, guards, and help on every command."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import Result

from leadsync.cli import main
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import lead_log, read_csv_report, write_csv

Cli = Callable[..., Result]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(leads=[str(i) for i in range(1000, 1100)])) as sb:
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        "LEADSYNC_API_KEY": DEFAULT_KEY,
        "LEADSYNC_BASE_URL": sandbox.base_url,
        "LEADSYNC_JOURNAL": str(tmp_path / "journal.sqlite"),
    }


def export(path: Path, n: int, status: str = "New", office: str = "1213") -> Path:
    rows = [["id", "first_name", "last_name", "status", "office_id"]]
    rows += [[str(1000 + i), f"F{i}", f"L{i}", status, office] for i in range(n)]
    return write_csv(path, rows)


def test_offices_lists_ids_as_numbers_whatever_their_json_type(
    cli: Cli, env: dict[str, str]
) -> None:
    result = cli("offices", env=env)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "  id  name",
        "1213  Bristol",
        "1214  Bath",
        "1215  Cardiff",
        "1216  Leeds",
    ]
    as_json = json.loads(cli("offices", "--json", env=env).stdout)
    assert as_json[0] == {"id": 1213, "name": "Bristol"} and as_json[1]["id"] == 1214


def test_offices_with_a_wrong_key_exits_3(cli: Cli, env: dict[str, str]) -> None:
    result = cli("offices", env={**env, "LEADSYNC_API_KEY": "nope-nope"})
    assert result.exit_code == 3
    assert result.stderr == (
        "leadsync: error: the API refused the key (HTTP 401): check LEADSYNC_API_KEY\n"
    )


def test_validate_check_offices(cli: Cli, env: dict[str, str], tmp_path: Path) -> None:
    src = export(tmp_path / "a.csv", 2, office="4242")
    plain = cli("validate", src, "--report-dir", tmp_path / "o1", env=env)
    assert plain.exit_code == 0  # a whole number: fine without the account's list
    checked = cli("validate", src, "--check-offices", "--report-dir", tmp_path / "o2", env=env)
    assert checked.exit_code == 1
    assert "unknown_office 2" in checked.stdout


def test_plan_from_the_journal_and_live(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    first = cli("plan", export(tmp_path / "a.csv", 3), env=env)
    assert first.exit_code == 0
    assert "    status: (not known) -> New" in first.stdout
    assert first.stdout.rstrip().endswith("12 change(s) to 3 lead(s)")
    assert cli("sync", tmp_path / "a.csv", "--report-dir", tmp_path / "s1", env=env).exit_code == 0
    changed = export(tmp_path / "b.csv", 3)
    text = changed.read_text().replace("1001,F1,L1,New,1213", "1001,F1,L1,Lost,1214")
    changed.write_text(text)
    planned = cli("plan", changed, "--format", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(planned.stdout)))
    assert rows == [
        {"row": "3", "lead_id": "1001", "field": "status", "old": "New", "new": "Lost"},
        {"row": "3", "lead_id": "1001", "field": "office_id", "old": "1213", "new": "1214"},
    ]
    before = len(lead_log(sandbox))
    live = cli("plan", changed, "--live", "--format", "json", env=env)
    assert live.exit_code == 0
    assert [(c["lead_id"], c["field"], c["old"], c["new"]) for c in json.loads(live.stdout)] == [
        ("1001", "status", "New", "Lost"),
        ("1001", "office_id", 1213, 1214),
    ]
    assert [e["method"] for e in lead_log(sandbox)[before:]] == ["GET"] * 3  # read, never written
    missing = cli("plan", tmp_path / "nope.csv", "--format", "json", env=env)
    assert missing.exit_code == 2  # JSON asked for: the error as JSON too
    assert json.loads(missing.stdout)["error"] == f"file not found: {tmp_path / 'nope.csv'}"
    assert cli("plan", tmp_path / "nope.csv", env=env).stdout == ""


def test_max_changes_refuses_before_sending(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    src = export(tmp_path / "a.csv", 12)
    result = cli("sync", src, "--max-changes", "10", "--report-dir", tmp_path / "o", env=env)
    assert result.exit_code == 3
    assert (
        "ABORTED: --max-changes 10: this file would change 12 leads; nothing was sent"
        in result.stdout
    )
    assert lead_log(sandbox) == []
    assert {r["outcome"] for r in read_csv_report(tmp_path / "o" / "failures.csv")} == {
        "not_attempted"
    }
    ok = cli("sync", src, "--max-changes", "12", "--report-dir", tmp_path / "o2", env=env)
    assert ok.exit_code == 0
    # the limit counts changes, not rows: a re-run changes nothing and passes any limit
    again = cli("sync", src, "--max-changes", "0", "--report-dir", tmp_path / "o3", env=env)
    assert again.exit_code == 0


def test_max_changes_counts_match_by_rows_against_the_leads_they_find(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    rows = [["email", "first_name", "last_name"]]
    rows += [[f"lead{1000 + i}@example.test", "A", "B"] for i in range(3)]
    rows += [["nobody@example.test", "C", "D"]]  # found nothing: never sent, not a change
    src = write_csv(tmp_path / "a.csv", rows)
    args = ("sync", src, "--match-by", "email", "--no-check-offices", "--max-changes")
    refused = cli(*args, "2", "--report-dir", tmp_path / "o1", env=env)
    assert "ABORTED: --max-changes 2: this file would change 3 leads" in refused.stdout
    assert cli(*args, "3", "--report-dir", tmp_path / "o2", env=env).exit_code == 1  # nobody@
    patches = [e for e in lead_log(sandbox) if e["method"] == "PATCH"]
    assert len(patches) == 3
    # the journal knows those leads now: the same file changes nothing
    again = cli(*args, "0", "--report-dir", tmp_path / "o3", env=env)
    assert again.exit_code == 1 and "ABORTED" not in again.stdout
    assert len([e for e in lead_log(sandbox) if e["method"] == "PATCH"]) == 3


def test_plan_live_stops_on_a_refused_key_and_says_when_it_cannot_connect(
    cli: Cli, env: dict[str, str], tmp_path: Path
) -> None:
    src = export(tmp_path / "a.csv", 2)
    refused = cli("plan", src, "--live", env={**env, "LEADSYNC_API_KEY": "revoked-key"})
    assert refused.exit_code == 3  # not a plan of "(not known)" values
    assert refused.stderr.startswith("leadsync: error: the API refused the key (HTTP 403)")
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api/v103"
    # the usual six attempts, with the backoff shortened through the mapping file (the
    # real client, the real refused connections; only the waits between them shrink)
    quick = tmp_path / "quick.toml"
    quick.write_text("[sending]\nbackoff_initial = 0.01\nbackoff_max = 0.05\n")
    gone = cli("plan", src, "--live", "--base-url", closed, "--mapping", quick, env=env)
    assert gone.exit_code == 2
    assert gone.stderr == (
        "leadsync: error: --live: reading lead 1000 failed (ConnectionError): check the base "
        "URL and the network\n"
    )


def test_plan_live_reads_through_503s_like_every_get(tmp_path: Path) -> None:
    from leadsync.api import plan
    from leadsync.config import Config

    src = export(tmp_path / "a.csv", 6)
    with Sandbox(SandboxConfig(fail_503=0.5, seed=3)) as sb:
        cfg = Config(base_url=sb.base_url, max_attempts=8, backoff_initial=0.001, backoff_max=0.01)
        changes = list(plan(src, cfg, api_key=DEFAULT_KEY, live=True))
        statuses = [e["status"] for e in lead_log(sb)]
    assert 503 in statuses and statuses.count(200) == 6  # each lead read, after retries
    old = {(c.lead_id, c.field): c.old for c in changes}
    assert old[("1000", "first_name")] != "(not known)"  # the live value, not a shrug


def test_plan_says_which_rows_it_left_out_as_invalid(cli: Cli, tmp_path: Path) -> None:
    rows = [["id", "first_name", "last_name", "status"], ["1000", "A", "B", "Lost"]]
    rows += [["1001", "#N/A", "B", "Lost"], ["1002", "A" * 51, "B", "New"], ["", "", "", ""]]
    src = write_csv(tmp_path / "a.csv", rows)
    shown = {}
    for fmt in ("table", "csv"):
        planned = cli("plan", src, "--format", fmt)
        assert planned.exit_code == 1
        assert planned.stderr == (
            "leadsync: note: 2 invalid row(s) left out, as a sync would leave them "
            f"(rows 3, 4): `leadsync validate {src}` says why\n"
        )
        shown[fmt] = planned.stdout
    assert shown["table"].endswith("3 change(s) to 1 lead(s)\n")  # row 2's, and only those
    assert "2,1000,status,(not known),Lost" in shown["csv"]


@pytest.mark.parametrize("pace", [(), ("--rate", "1000")])
def test_max_failure_rate_stops_a_run_going_wrong(
    cli: Cli, env: dict[str, str], tmp_path: Path, pace: tuple[str, ...]
) -> None:
    # unthrottled, the one worker finishes row 11 long before the main thread drains row
    # 10's result: the guard must be judged as each row ends, not when the results are read
    rows = [["id", "first_name", "last_name"]] + [[str(5000 + i), "A", "B"] for i in range(40)]
    src = write_csv(tmp_path / "a.csv", rows)  # leads the account does not have: all 404
    result = cli(
        "sync",
        src,
        *pace,
        "--max-failure-rate",
        "0.2",
        "--concurrency",
        "1",
        "--report-dir",
        tmp_path / "o",
        "--json",
        env=env,
    )
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert summary["aborted"] == "--max-failure-rate 0.2: 10 of the first 10 rows sent failed"
    assert summary["outcomes"]["rejected"] == 10 and summary["outcomes"]["not_attempted"] == 30


def test_every_command_and_option_has_help_and_an_example() -> None:
    assert isinstance(main, click.Group)
    for name, command in main.commands.items():
        assert command.help and "Example:" in command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"


def test_match_by_email_finds_each_lead_or_says_why_not(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    sandbox.leads["1002"]["email"] = "lead1001@example.test"  # two leads share an address
    src = write_csv(
        tmp_path / "a.csv",
        [
            ["Email", "first_name", "last_name", "status"],
            ["lead1000@example.test", "A", "B", "Lost"],
            ["LEAD1001@example.test", "C", "D", "Lost"],
            ["nobody@example.test", "E", "F", "Lost"],
            ["", "G", "H", "Lost"],
        ],
    )
    without = cli("sync", src, "--report-dir", tmp_path / "o0", env=env)
    assert without.exit_code == 2 and "no lead id column" in without.stderr
    result = cli("sync", src, "--match-by", "email", "--report-dir", tmp_path / "o", env=env)
    assert result.exit_code == 1
    fails = {
        r["row"]: (r["outcome"], r["code"], r["message"])
        for r in read_csv_report(tmp_path / "o" / "failures.csv")
    }
    assert (
        fails["3"][:2] == ("invalid", "no_single_match")
        and "2 leads have the email" in fails["3"][2]
    )
    assert fails["4"] == (
        "invalid",
        "no_single_match",
        "no lead has the email 'nobody@example.test'",
    )
    assert fails["5"][:2] == ("invalid", "id_missing")
    [ok] = read_csv_report(tmp_path / "o" / "successes.csv")
    assert (ok["row"], ok["lead_id"], ok["outcome"]) == ("2", "1000", "updated")
    assert sandbox.lead("1000")["status"] == "Lost"  # type: ignore[index]
    assert [e["method"] for e in lead_log(sandbox)] == ["PATCH"]


def test_match_by_never_lets_two_rows_update_one_lead(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    # "the same lead id on two rows is a validation error on both" (spec §3), also when
    # the lead is found by --match-by: every lookup is done before anything is sent
    src = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "email", "first_name", "last_name", "questionnaire: Budget?"],
            ["", "lead1000@example.test", "A", "B", "£300k"],
            ["", "LEAD1000@example.test", "C", "D", "£400k"],
            ["1003", "", "E", "F", "£500k"],
            ["", "lead1003@example.test", "G", "H", "£600k"],
            ["", "lead1005@example.test", "I", "J", "£700k"],
        ],
    )
    result = cli("sync", src, "--match-by", "email", "--report-dir", tmp_path / "o", env=env)
    assert result.exit_code == 1
    fails = {
        r["row"]: (r["outcome"], r["code"], r["message"])
        for r in read_csv_report(tmp_path / "o" / "failures.csv")
    }
    twice = ": one lead on two rows would get its questionnaire twice; keep one row"
    assert fails == {
        "2": (
            "invalid",
            "id_duplicate",
            "email 'lead1000@example.test' finds lead 1000, which row 3 also updates" + twice,
        ),
        "3": (
            "invalid",
            "id_duplicate",
            "email 'LEAD1000@example.test' finds lead 1000, which row 2 also updates" + twice,
        ),
        "4": ("invalid", "id_duplicate", "row 5 also updates lead 1003 (found by email)" + twice),
        "5": (
            "invalid",
            "id_duplicate",
            "email 'lead1003@example.test' finds lead 1003, which row 4 also updates" + twice,
        ),
    }
    ok = {r["row"]: r["lead_id"] for r in read_csv_report(tmp_path / "o" / "successes.csv")}
    assert ok == {"6": "1005"}
    patches = [e["path"].rsplit("/", 1)[-1] for e in lead_log(sandbox) if e["method"] == "PATCH"]
    assert patches == ["1005"]  # nothing was sent to 1000 or 1003


def test_match_by_with_a_refused_key_stops_before_anything_is_sent(
    cli: Cli, env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    rows = [["email", "first_name", "last_name"]]
    rows += [[f"lead{1000 + i}@example.test", "A", "B"] for i in range(30)]
    src = write_csv(tmp_path / "a.csv", rows)
    result = cli(
        "sync", src, "--match-by", "email", "--no-check-offices", "--report-dir", tmp_path / "o",
        env={**env, "LEADSYNC_API_KEY": "revoked-key"},
    )  # fmt: skip
    assert result.exit_code == 3
    assert "ABORTED: the API refused the key (HTTP 403): check LEADSYNC_API_KEY" in result.stdout
    fails = read_csv_report(tmp_path / "o" / "failures.csv")
    assert {r["outcome"] for r in fails} == {"not_attempted"} and len(fails) == 30
    lookups = [e for e in sandbox.requests_log() if e["path"].endswith("/person/leads")]
    assert 1 <= len(lookups) <= 8  # at most one per lookup thread, then it stopped
    assert not [e for e in sandbox.requests_log() if e["method"] == "PATCH"]


def test_a_lookup_the_api_cannot_answer_fails_the_row_it_does_not_make_it_invalid(
    tmp_path: Path,
) -> None:
    import leadsync
    from leadsync.config import Config

    rows = [["email", "first_name", "last_name"], ["lead1000@example.test", "A", "B"]]
    src = write_csv(tmp_path / "a.csv", rows)
    with Sandbox(SandboxConfig(fail_503=1.0)) as sb:
        cfg = Config(
            base_url=sb.base_url, match_by="email", check_offices=False, max_attempts=2,
            backoff_initial=0.01, backoff_max=0.01,
        )  # fmt: skip
        result = leadsync.sync(src, cfg, tmp_path / "o", api_key=DEFAULT_KEY)
        lookups = [e for e in sb.requests_log() if e["path"].endswith("/person/leads")]
    assert result.exit_code == 1
    [fail] = read_csv_report(tmp_path / "o" / "failures.csv")
    assert (fail["outcome"], fail["code"], fail["message"]) == (
        "failed",
        "lookup_failed",
        "looking the lead up failed: HTTP 503",
    )
    assert len(lookups) == 2  # retried once (max_attempts=2), then given up


def test_log_format_json_and_quiet(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"]])  # header only
    text = cli("validate", src, "--report-dir", tmp_path / "o1")
    assert text.exit_code == 0
    assert text.stderr == "leadsync: note: a.csv has a header but no data rows\n"
    as_json = cli("--log-format", "json", "validate", src, "--report-dir", tmp_path / "o2")
    line = json.loads(as_json.stderr)
    assert (line["level"], line["msg"]) == ("note", "a.csv has a header but no data rows")
    quiet = cli("-q", "validate", src, "--report-dir", tmp_path / "o3")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    error = cli("--log-format", "json", "-q", "validate", tmp_path / "missing.csv")
    assert error.exit_code == 2
    assert json.loads(error.stderr)["msg"] == f"file not found: {tmp_path / 'missing.csv'}"


def test_verbose_progress_lines_as_json(cli: Cli, tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(latency=0.3, leads=[str(i) for i in range(1000, 1030)])) as sb:
        env = {"LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}
        result = cli(
            "-v",
            "--log-format",
            "json",
            "sync",
            export(tmp_path / "a.csv", 30),
            "--rate",
            "10",
            "--report-dir",
            tmp_path / "o",
            env=env,
        )
    assert result.exit_code == 0
    lines = [json.loads(x) for x in result.stderr.splitlines()]
    progress = [x for x in lines if x["level"] == "info"]
    assert progress and progress[0]["rows"] == 30 and "rows_done" in progress[0]
