"""`sync` against the real sandbox over loopback: outcomes, faults, throttling, aborts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

import leadsync
from leadsync.config import Config
from leadsync.errors import LeadsyncError
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import lead_log, read_csv_report, wait_until_sandbox, write_csv, write_xlsx

Cli = Callable[..., Result]
FAST = {"backoff_initial": 0.01, "backoff_max": 0.2}


def leads_file(path: Path, n: int, *, questionnaire_every: int = 2, start: int = 1000) -> Path:
    rows: list[list[Any]] = [["id", "first_name", "last_name", "status", "questionnaire: Budget?"]]
    for i in range(n):
        answer = f"£{100 + i}k" if i % questionnaire_every == 0 else ""
        rows.append([start + i, f"First{i}", f"Last{i}", "Contacted", answer])
    return write_xlsx(path, rows)


def outcomes(report_dir: Path) -> dict[int, str]:
    seen: dict[int, str] = {}
    for name in ("successes.csv", "failures.csv"):
        for r in read_csv_report(report_dir / name):
            row = int(r["row"])
            assert seen.get(row, r["outcome"]) == r["outcome"], f"row {row} has two outcomes"
            seen[row] = r["outcome"]
    return seen


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(seed=1)) as sb:
        yield sb


def run_sync(
    sb: Sandbox, src: Path, out: Path, key: str = DEFAULT_KEY, **config: Any
) -> leadsync.RunResult:
    cfg = Config(base_url=sb.base_url, **{**FAST, **config})
    return leadsync.sync(src, cfg, out, api_key=key)


def test_every_valid_row_is_sent_once_with_only_its_fields(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        [
            [
                "id",
                "first_name",
                "last_name",
                "office_id",
                "gdpr_checkbox",
                "meta: source",
                "Notes",
            ],
            ["1001", "Ann", "Lee", "1213", "yes", "crm", "x"],
            ["1002", "Bob", "Ray", "", "", "", ""],
            ["", "", "", "", "", "", ""],
            ["1003", "Cy", "x" * 51, "", "", "", ""],
        ],
    )
    result = run_sync(sandbox, src, tmp_path / "out")
    assert result.exit_code == 1  # one invalid row
    assert outcomes(tmp_path / "out") == {
        2: "updated",
        3: "updated",
        4: "skipped_blank",
        5: "invalid",
    }
    log = lead_log(sandbox)
    assert {e["lead"]: (e["method"], e["body"]) for e in log} == {
        "1001": (
            "PATCH",
            {
                "first_name": "Ann",
                "last_name": "Lee",
                "office_id": 1213,
                "gdpr_checkbox": True,
                "meta": {"source": "crm"},
            },
        ),
        "1002": ("PATCH", {"first_name": "Bob", "last_name": "Ray"}),
    }
    ok = {r["lead_id"]: r for r in read_csv_report(tmp_path / "out" / "successes.csv")}
    assert ok["1001"]["fields_sent"] == "first_name,last_name,office_id,gdpr_checkbox,meta"
    assert ok["1001"]["http_status"] == "200"
    summary = result.summary
    assert summary["sending"]["requests"] == 3 and summary["aborted"] is None  # + GET /offices
    assert sum(summary["outcomes"].values()) == 4


def test_a_formatted_id_cell_is_the_lead_its_number_names(sandbox: Sandbox, tmp_path: Path) -> None:
    """An id column formatted #,##0 shows 1,213: the lead is 1213, in the URL, the
    reports and the journal, on the columnar path as row by row (it sent
    ``/leads/1,213``)."""
    src = write_xlsx(
        tmp_path / "in.xlsx",
        [
            ["id", "first_name", "last_name"],
            [1213, "Ann", "Lee"],
            [1214, "Bob", "Ray"],
            [1215, "Cy", "x" * 51],
        ],
        number_formats={"A2": "#,##0", "A3": "#,##0.00", "A4": "#,##0"},
    )
    result = run_sync(sandbox, src, tmp_path / "out")
    assert result.exit_code == 1
    assert sorted(e["lead"] for e in lead_log(sandbox)) == ["1213", "1214"]
    ok = read_csv_report(tmp_path / "out" / "successes.csv")
    assert [(r["lead_id"], r["id"]) for r in ok] == [("1213", "1,213"), ("1214", "1,214.00")]
    failed = read_csv_report(tmp_path / "out" / "failures.csv")
    assert [(r["lead_id"], r["id"]) for r in failed] == [("1215", "1,215")]
    for fast in (True, False):
        rows = leadsync.mapped_rows(src, fast=fast)
        assert [r.lead_id for r in rows] == ["1213", "1214", "1215"], fast


def test_fault_mix_every_row_one_outcome_nothing_doubled(tmp_path: Path) -> None:
    faults = SandboxConfig(fail_503=0.10, fail_500_after=0.05, drop_after=0.05, seed=11)
    with Sandbox(faults) as sb:
        src = leads_file(tmp_path / "in.xlsx", 120)
        result = run_sync(sb, src, tmp_path / "out", concurrency=4)
        stats = sb.stats()
        log = sb.requests_log()  # every request, the office check included
    seen = outcomes(tmp_path / "out")
    assert sorted(seen) == list(range(2, 122))  # every row, exactly once
    counts = Counter(seen.values())
    assert set(counts) <= {"updated", "unknown", "failed"}
    assert counts["updated"] >= 110
    assert (
        stats["faults"]["503"] > 0
        and stats["faults"]["500_after"] > 0
        and stats["faults"]["drop_after"] > 0
    )
    assert stats["duplicate_questionnaire_pairs"] == 0
    updated = {r["lead_id"] for r in read_csv_report(tmp_path / "out" / "successes.csv")}
    assert updated <= set(stats["applied"])  # every row reported updated was applied
    for lead, applied in stats["applied"].items():
        assert applied["questionnaire_len"] <= 1, lead
    assert result.summary["sending"]["retries"] > 0
    assert result.exit_code == (0 if counts["updated"] == 120 else 1)
    assert len(log) == result.summary["sending"]["requests"]


def test_ambiguous_questionnaire_row_is_checked_not_resent(tmp_path: Path) -> None:
    # every request is answered 500 after it was processed: idempotent rows are re-sent
    # (and keep failing); questionnaire rows are read back, the reads fail too, so they
    # end unknown rather than risk appending their answers twice
    with Sandbox(SandboxConfig(fail_500_after=1.0, seed=3)) as sb:
        src = leads_file(tmp_path / "in.xlsx", 4)
        result = run_sync(sb, src, tmp_path / "out", max_attempts=3, breaker_threshold=100)
        stats = sb.stats()
    seen = outcomes(tmp_path / "out")
    # rows 2 and 4 carry a questionnaire answer; 3 and 5 do not
    assert seen == {2: "unknown", 3: "failed", 4: "unknown", 5: "failed"}
    assert stats["applied"]["1000"]["count"] == 1  # never re-sent
    assert stats["applied"]["1001"]["count"] == 3  # idempotent: retried up to max_attempts
    assert stats["duplicate_questionnaire_pairs"] == 0
    assert result.exit_code == 1


def test_read_back_confirms_an_applied_questionnaire_update(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(script=("drop_after",))) as sb:  # the first PATCH drops
        src = leads_file(tmp_path / "in.xlsx", 1)
        result = run_sync(sb, src, tmp_path / "out")
        stats = sb.stats()
        methods = [e["method"] for e in lead_log(sb)]
    assert result.exit_code == 0
    [ok] = read_csv_report(tmp_path / "out" / "successes.csv")
    assert ok["outcome"] == "updated"
    assert stats["applied"]["1000"]["count"] == 1
    assert methods == ["PATCH", "GET"]


def test_read_back_showing_nothing_applied_allows_a_resend(tmp_path: Path) -> None:
    # a 503 is before applying, so it is always safe; a drop *before* applying cannot
    # be told apart from one after, so the lead is read back: nothing there, send again
    with Sandbox(SandboxConfig(script=("503",))) as sb:
        src = leads_file(tmp_path / "in.xlsx", 1)
        result = run_sync(sb, src, tmp_path / "out")
        methods = [(e["method"], e["status"]) for e in lead_log(sb)]
    assert result.exit_code == 0
    assert methods == [("PATCH", 503), ("PATCH", 200)]


def test_server_rejections_are_final_and_point_at_the_cell(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_xlsx(
        tmp_path / "in.xlsx",
        [
            ["id", "first_name", "last_name", "office_id"],
            [1001, "Ann", "Lee", 4242],  # not an office of the account
            [77, "Bob", "Ray", None],  # no such lead
        ],
    )
    # by default the office list is fetched first and the row never goes out
    checked = run_sync(sandbox, src, tmp_path / "checked")
    assert checked.exit_code == 1
    early = {r["lead_id"]: r for r in read_csv_report(tmp_path / "checked" / "failures.csv")}
    assert (early["1001"]["outcome"], early["1001"]["code"]) == ("invalid", "unknown_office")
    assert [e["lead"] for e in lead_log(sandbox)] == ["77"]
    # without the check, the server's own 422 is reported the same way, per field
    result = run_sync(sandbox, src, tmp_path / "out", check_offices=False)
    assert result.exit_code == 1
    fails = {r["lead_id"]: r for r in read_csv_report(tmp_path / "out" / "failures.csv")}
    assert fails["1001"]["outcome"] == "rejected" and fails["1001"]["http_status"] == "422"
    assert fails["1001"]["field"] == "office_id" and fails["1001"]["stage"] == "send"
    assert fails["1001"]["message"] == "office 4242 is not an office of this account"
    assert fails["77"]["outcome"] == "rejected" and fails["77"]["http_status"] == "404"
    assert fails["77"]["message"] == "Lead 77 not found."
    assert len(lead_log(sandbox)) == 3  # nothing retried
    from openpyxl import load_workbook

    ws = load_workbook(tmp_path / "out" / "report.xlsx").active
    assert ws is not None
    # the office id column (D in the file) is F: leadsync's outcome and problems come first
    assert ws["F2"].comment is not None and "not an office" in ws["F2"].comment.text


def test_wrong_key_is_caught_before_any_update(sandbox: Sandbox, tmp_path: Path) -> None:
    src = leads_file(tmp_path / "in.xlsx", 50, questionnaire_every=1000)
    result = run_sync(sandbox, src, tmp_path / "out", key="wrong-key-123")
    assert result.exit_code == 3
    assert result.summary["aborted"].startswith("the API refused the key (HTTP 401)")
    assert [e["path"] for e in sandbox.requests_log()] == ["/api/v103/offices"]
    assert result.summary["outcomes"]["not_attempted"] == 50


def test_wrong_key_aborts_after_a_handful_of_requests(sandbox: Sandbox, tmp_path: Path) -> None:
    src = leads_file(tmp_path / "in.xlsx", 300, questionnaire_every=1000)
    result = run_sync(sandbox, src, tmp_path / "out", key="wrong-key-123", check_offices=False)
    assert result.exit_code == 3
    assert "the API refused the key (HTTP 401)" in result.summary["aborted"]
    requests_made = len(lead_log(sandbox))
    assert requests_made <= 2 * 4  # at most what was in flight
    counts = result.summary["outcomes"]
    assert counts["not_attempted"] >= 300 - requests_made
    assert counts["failed"] == requests_made
    assert sum(counts.values()) == 300
    fails = read_csv_report(tmp_path / "out" / "failures.csv")
    assert {r["outcome"] for r in fails} == {"failed", "not_attempted"}


def test_circuit_breaker_stops_a_run_against_a_dead_server(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(fail_503=1.0)) as sb:
        sb.config.fail_503 = 1.0
        src = leads_file(tmp_path / "in.xlsx", 60, questionnaire_every=1000)
        cfg = Config(
            base_url=sb.base_url,
            max_attempts=2,
            breaker_threshold=5,
            backoff_initial=0.01,
            backoff_max=0.01,
            concurrency=2,
        )
        result = leadsync.sync(src, cfg, tmp_path / "out", api_key=DEFAULT_KEY)
    assert result.exit_code == 3
    assert result.summary["aborted"].startswith("circuit breaker: 5 rows in a row failed")
    counts = result.summary["outcomes"]
    assert counts["failed"] >= 5 and counts["not_attempted"] > 0
    assert counts["failed"] + counts["not_attempted"] == 60


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(rate_limit=5, burst=5, window=2.0)) as sb:
        src = leads_file(tmp_path / "in.xlsx", 8, questionnaire_every=1000)
        start = time.monotonic()
        result = run_sync(sb, src, tmp_path / "out", start_rate=50)
        elapsed = time.monotonic() - start
        log = lead_log(sb)
    assert result.exit_code == 0
    assert result.summary["outcomes"]["updated"] == 8
    limited = [e for e in log if e["status"] == 429]
    assert 1 <= len(limited) <= 2
    after = [e["t"] for e in log if e["t"] > limited[0]["t"]]
    assert min(after) - limited[0]["t"] >= 0.9  # waited out Retry-After: 1+ s
    assert elapsed >= 1.5  # 8 requests at 5 per 2 s cannot finish sooner
    assert result.summary["sending"]["rate_limited_429"] == len(limited)


def test_pinned_rate_is_never_exceeded(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(leads=[str(i) for i in range(1000, 1030)])) as sb:
        src = leads_file(tmp_path / "in.xlsx", 30, questionnaire_every=1000)
        result = run_sync(sb, src, tmp_path / "out", rate=20, concurrency=4)
        times = [e["t"] for e in lead_log(sb)]
    assert result.exit_code == 0
    assert len(times) == 30
    # 21 requests in a row span a second: at most 20 in any second, give or take the
    # loopback's scheduling jitter on the server's arrival clock (0.15 s)
    spans = [times[i + 20] - times[i] for i in range(len(times) - 20)]
    assert min(spans) >= 0.85, spans
    assert times[-1] - times[0] >= 29 / 20 * 0.9


def test_stalled_answers_time_out_and_are_resolved(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(stall_after=0.3, stall_seconds=2, seed=5)) as sb:
        src = leads_file(tmp_path / "in.xlsx", 12)
        result = run_sync(sb, src, tmp_path / "out", read_timeout=0.4, concurrency=4)
        stats = sb.stats()
    seen = outcomes(tmp_path / "out")
    assert sorted(seen) == list(range(2, 14))
    assert stats["faults"].get("stall_after", 0) > 0
    assert stats["duplicate_questionnaire_pairs"] == 0
    assert Counter(seen.values())["updated"] >= 10
    assert result.exit_code in (0, 1)


def test_https_is_required_off_loopback(tmp_path: Path) -> None:
    src = leads_file(tmp_path / "in.xlsx", 1)
    with pytest.raises(
        LeadsyncError,
        match=re.escape(
            "refusing to send the API key over plain http to api.example.com: use https://"
        ),
    ):
        leadsync.sync(
            src, Config(base_url="http://api.example.com/api/v103"), tmp_path / "o", api_key="k"
        )


def test_cli_sync_exit_codes_and_the_key_never_shows(
    cli: Cli, sandbox: Sandbox, tmp_path: Path
) -> None:
    key = "s3cr3t-key-value-0987"
    sandbox.config.api_key = key
    src = leads_file(tmp_path / "in.xlsx", 5)
    journal = str(tmp_path / "journal.sqlite")
    env = {
        "LEADSYNC_API_KEY": key,
        "LEADSYNC_BASE_URL": sandbox.base_url,
        "LEADSYNC_JOURNAL": journal,
    }
    ok = cli("sync", src, "--report-dir", tmp_path / "ok", "--json", env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["outcomes"]["updated"] == 5
    dry = cli("sync", src, "--dry-run", "--report-dir", tmp_path / "dry", env=env)
    assert dry.exit_code == 0 and "valid" in dry.stdout
    assert sandbox.stats()["applied_requests"] == 5  # the dry run sent nothing
    fresh = leads_file(tmp_path / "fresh.xlsx", 5, start=2000)  # not yet in the journal
    bad = cli(
        "sync",
        fresh,
        "--report-dir",
        tmp_path / "bad",
        env={**env, "LEADSYNC_API_KEY": "wrong-" + key},
    )
    assert bad.exit_code == 3
    assert "ABORTED: the API refused the key (HTTP 401)" in bad.stdout
    bad_json = cli(
        "sync", fresh, "--report-dir", tmp_path / "bad2", "--json",
        env={**env, "LEADSYNC_API_KEY": "wrong-" + key},
    )  # fmt: skip
    assert bad_json.exit_code == 3
    aborted = json.loads(bad_json.stdout)  # the run's summary, one document, no error one
    assert aborted["exit_code"] == 3 and "refused the key" in aborted["aborted"]
    nokey = cli("sync", src, env={**env, "LEADSYNC_API_KEY": ""})
    assert nokey.exit_code == 2
    assert (
        nokey.stderr
        == "leadsync: error: no API key: set LEADSYNC_API_KEY or pass --api-key-file PATH\n"
    )
    nokey_json = cli("sync", src, "--json", env={**env, "LEADSYNC_API_KEY": ""})
    assert json.loads(nokey_json.stdout)["error"] == (
        "no API key: set LEADSYNC_API_KEY or pass --api-key-file PATH"
    )
    keyfile = tmp_path / "key"
    keyfile.write_text(key + "\n")
    keyfile.chmod(0o644)
    viafile = cli(
        "sync",
        src,
        "--api-key-file",
        keyfile,
        "--report-dir",
        tmp_path / "kf",
        env={**env, "LEADSYNC_API_KEY": ""},
    )
    assert viafile.exit_code == 0
    assert "unchanged" in viafile.stdout  # same journal: nothing new to send
    assert (
        f"leadsync: warning: the API key file {keyfile} can be read by other users"
        in viafile.stderr
    )
    for result in (ok, dry, bad, nokey, viafile):
        assert key not in result.stdout and key not in result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != keyfile:
            assert key.encode() not in path.read_bytes(), path


def test_rate_and_max_rate_are_exclusive(cli: Cli, tmp_path: Path) -> None:
    result = cli("sync", tmp_path / "x.csv", "--rate", "5", "--max-rate", "9")
    assert result.exit_code == 2
    assert "--rate pins the rate; --max-rate bounds the adaptive rate: use one" in result.stderr


def test_sigterm_finishes_in_flight_rows_and_reports_all(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(latency=0.2)) as sb:
        src = leads_file(tmp_path / "in.xlsx", 200)
        env = {
            **os.environ,
            "LEADSYNC_API_KEY": DEFAULT_KEY,
            "LEADSYNC_BASE_URL": sb.base_url,
            "LEADSYNC_JOURNAL": str(tmp_path / "journal.sqlite"),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadsync",
                "sync",
                str(src),
                "--report-dir",
                str(tmp_path / "out"),
                "--rate",
                "10",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_sandbox(sb, "applied_requests", 5, proc)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        stats = sb.stats()
    assert proc.returncode == 3, err
    assert "SIGTERM: finishing the rows in flight" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"] == 200
    assert summary["outcomes"]["updated"] == stats["applied_requests"]
    assert summary["outcomes"]["not_attempted"] == 200 - stats["applied_requests"]
    assert sorted(outcomes(tmp_path / "out")) == list(range(2, 202))


def test_sigterm_with_requests_stalled_ends_after_the_grace_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # every PATCH is applied and then never answered (for 60 s): a stop must not wait for
    # them; their rows end unknown, the next run reads those leads back and sends nothing
    # twice
    src = leads_file(tmp_path / "in.csv", 30)
    mapping = tmp_path / "map.toml"
    mapping.write_text("[sending]\nstop_grace = 0.5\n", encoding="utf-8")
    with Sandbox(SandboxConfig(stall_after=1.0, stall_seconds=60)) as sb:
        env = {
            **os.environ,
            "LEADSYNC_API_KEY": DEFAULT_KEY,
            "LEADSYNC_BASE_URL": sb.base_url,
            "LEADSYNC_JOURNAL": str(tmp_path / "journal.sqlite"),
        }
        command = [
            sys.executable,
            "-m",
            "leadsync",
            "sync",
            str(src),
            "--mapping",
            str(mapping),
            "--no-check-offices",
        ]
        proc = subprocess.Popen(
            [*command, "--report-dir", str(tmp_path / "out"), "--concurrency", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_sandbox(sb, "applied_requests", 4, proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
        applied = sb.stats()["applied_requests"]
        sb.config.stall_after = 0.0  # the server recovers
        rerun = subprocess.run(
            [*command, "--report-dir", str(tmp_path / "again")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        stats = sb.stats()
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    assert stopped_in < 20  # the grace and the reports, not the 60 s stalls
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["outcomes"]["unknown"] == applied == 4  # the four in flight
    assert summary["outcomes"]["not_attempted"] == 26
    assert sorted(outcomes(tmp_path / "out")) == list(range(2, 32))  # each row once
    failures = (tmp_path / "out" / "failures.csv").read_text(encoding="utf-8")
    assert failures.count("stopped_in_flight") == 4
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    # the four were read back, found applied, and not sent a second time
    assert (again["outcomes"]["updated"], again["outcomes"]["unchanged"]) == (26, 4)
    assert stats["applied_requests"] == 30
