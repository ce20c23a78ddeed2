"""Unattended runs (issue 16): job files, run-size guards, notifications to real loopback
receivers (an HTTP server, an SMTP server), dead-man pings, metrics, retention, erasure."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

import leadsync
from leadsync.config import Config
from leadsync.journal import Journal
from leadsync.retention import forget, prune
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from tests.conftest import read_csv_report, wait_until_sandbox, write_csv

Cli = Callable[..., Result]


def export(path: Path, n: int, *, status: str = "Contacted", bad: int = 0) -> Path:
    """``n`` rows of leads 1000.. ; the first ``bad`` have an office id that is text."""
    rows: list[list[Any]] = [["id", "first_name", "last_name", "status", "office_id",
                              "questionnaire: Budget?"]]  # fmt: skip
    for i in range(n):
        office = "Bristol" if i < bad else "1213"
        rows.append([1000 + i, f"Private{i}", f"Person{i}", status, office, f"£{i}k"])
    return write_csv(path, rows)


# -- real receivers on loopback --------------------------------------------------------


class Receiver:
    """An HTTP server that records every request (path and body); ``stall`` seconds
    before answering when set."""

    def __init__(self, status: int = 200, stall: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.requests.append({"path": self.path, "body": body.decode("utf-8")})
                if stall:
                    time.sleep(stall)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def smtp() -> Iterator[list[Any]]:
    """A real SMTP server (aiosmtpd) on a free loopback port; yields the messages it got
    (and sets LEADSYNC_SMTP_URL for the test)."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()  # returns once the server answers (its own readiness check)
    old = os.environ.get("LEADSYNC_SMTP_URL")
    os.environ["LEADSYNC_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    try:
        yield got
    finally:
        controller.stop()
        if old is None:
            os.environ.pop("LEADSYNC_SMTP_URL", None)
        else:
            os.environ["LEADSYNC_SMTP_URL"] = old


def env_for(sb: Sandbox) -> dict[str, str]:
    return {"LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}


# -- the job file ------------------------------------------------------------------------


def test_a_job_file_runs_the_whole_nightly_job_and_flags_override_it(
    cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    export(tmp_path / "leads.csv", 5)
    (tmp_path / "mapping.toml").write_text('[columns]\n"status" = "status"\n', encoding="utf-8")
    job = tmp_path / "nightly.toml"
    job.write_text(
        "[run]\n"
        'name = "nightly"\n'
        'input = "leads.csv"\n'
        'mapping = "mapping.toml"\n'
        'journal = "state/journal.sqlite"\n'
        'report_dir = "reports"\n'
        "[sending]\nconcurrency = 2\n"
        "[guards]\nmin_rows = 3\n"
        f'[notify]\nurls = ["{receiver.url}/hook"]\non = "always"\n',
        encoding="utf-8",
    )
    with Sandbox() as sb:
        (tmp_path / "state").mkdir()
        first = cli("sync", "--job", job, env=env_for(sb))
        assert first.exit_code == 0, first.output
        runs = list((tmp_path / "reports").iterdir())
        assert len(runs) == 1 and (runs[0] / "summary.json").is_file()
        assert Journal(tmp_path / "state" / "journal.sqlite").runs()[0]["status"] == "done"
        # a flag beside the job file wins over it: the guard refuses now
        second = cli("sync", "--job", job, "--min-rows", "50", env=env_for(sb))
        assert second.exit_code == 3
        assert "--min-rows 50: the file has 5 rows; nothing was sent" in second.output
    assert [r["path"] for r in receiver.requests] == ["/hook", "/hook"]


def test_a_job_file_that_holds_the_key_or_an_unknown_setting_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[run]\ninput = "x.csv"\napi_key = "secret"\n', encoding="utf-8")
    result = cli("sync", "--job", job)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"leadsync: error: job file {job}: unknown key(s) api_key")
    assert "secret" not in result.stderr
    job.write_text('[run]\ninput = "x.csv"\n[guards]\nmax_shrinkk = 50\n', encoding="utf-8")
    result = cli("sync", "--job", job)
    assert result.exit_code == 2 and "unknown key(s) max_shrinkk in [guards]" in result.stderr


def test_the_templates_job_file_is_a_valid_job(tmp_path: Path) -> None:
    from leadsync.data import template_path
    from leadsync.job import load_job

    job = load_job(template_path("nightly-job.toml"))
    assert job.config.job_name == "nightly" and job.config.max_shrink == 50
    assert job.config.keep_runs == 90 * 86400 and job.config.snapshot is True


# -- run-size guards -------------------------------------------------------------------


def test_min_rows_refuses_a_header_only_file_and_says_so(cli: Cli, tmp_path: Path) -> None:
    src = export(tmp_path / "empty.csv", 0)
    with Sandbox() as sb:
        result = cli("sync", src, "--min-rows", "1", "--report-dir", tmp_path / "o",
                     "--journal", tmp_path / "j.sqlite", env=env_for(sb))  # fmt: skip
        assert sb.stats()["requests"] == 0
    assert result.exit_code == 3
    assert "empty.csv has a header but no data rows" in result.stderr
    assert "--min-rows 1: the file has 0 rows; nothing was sent" in result.stdout


def test_max_shrink_refuses_a_file_much_smaller_than_the_last_run(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url, max_shrink=50)
        full = export(tmp_path / "leads.csv", 10)
        first = leadsync.sync(full, cfg, tmp_path / "o1", api_key=DEFAULT_KEY, journal=journal)
        assert first.exit_code == 0  # no earlier run: nothing to compare with
        export(tmp_path / "leads.csv", 4, status="Lost")  # the same job, cut short
        cut = leadsync.sync(full, cfg, tmp_path / "o2", api_key=DEFAULT_KEY, journal=journal)
        sent = [e for e in sb.requests_log() if e["method"] == "PATCH"]
        export(tmp_path / "leads.csv", 6, status="Lost")  # 60%: allowed
        ok = leadsync.sync(full, cfg, tmp_path / "o3", api_key=DEFAULT_KEY, journal=journal)
    assert int(cut.exit_code) == 3 and len(sent) == 10
    assert cut.summary["aborted"].startswith(
        "--max-shrink 50: the file has 4 rows, under 50% of the 10 rows of the last run"
    )
    assert cut.summary["outcomes"]["not_attempted"] == 4
    assert ok.exit_code == 0 and ok.summary["outcomes"]["updated"] == 6


def test_max_invalid_rate_refuses_a_wrong_export_before_sending(tmp_path: Path) -> None:
    src = export(tmp_path / "leads.csv", 10, bad=4)
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url, max_invalid_rate=0.3)
        result = leadsync.sync(src, cfg, tmp_path / "o", api_key=DEFAULT_KEY)
        assert [e for e in sb.requests_log() if e["method"] == "PATCH"] == []
        fine = leadsync.sync(
            src, Config(base_url=sb.base_url, max_invalid_rate=0.5), tmp_path / "o2",
            api_key=DEFAULT_KEY,
        )  # fmt: skip
    assert int(result.exit_code) == 3
    assert result.summary["aborted"].startswith("--max-invalid-rate 0.3: 4 of the 10 rows")
    assert result.summary["outcomes"] == {**result.summary["outcomes"], "invalid": 4,
                                          "not_attempted": 6}  # fmt: skip
    assert fine.summary["outcomes"]["updated"] == 6


# -- notifications -------------------------------------------------------------------


def test_a_failed_run_notifies_the_webhook_with_counts_codes_and_no_personal_data(
    cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    src = export(tmp_path / "leads.csv", 6, bad=2)
    with Sandbox() as sb:
        result = cli("sync", src, "--notify", f"{receiver.url}/services/T0/B0/secret",
                     "--report-dir", tmp_path / "o", env=env_for(sb))  # fmt: skip
    assert result.exit_code == 1
    [request] = receiver.requests
    body = json.loads(request["body"])
    assert body["text"].splitlines() == [
        "leadsync sync leads.csv: exit 1 (rows need attention): 4 updated, 2 invalid",
        "first problems: row 2 not_a_number, row 3 not_a_number",
        f"reports: {tmp_path / 'o'}",
    ]
    assert body["exit_code"] == 1 and body["summary"]["outcomes"]["updated"] == 4
    assert "Private" not in request["body"] and DEFAULT_KEY not in request["body"]


def test_notify_on_failure_stays_quiet_on_a_clean_run_and_always_does_not(
    tmp_path: Path, receiver: Receiver
) -> None:
    src = export(tmp_path / "leads.csv", 3)
    with Sandbox() as sb:
        quiet = Config(base_url=sb.base_url, notify=(receiver.url,))
        leadsync_cli_like(src, quiet, tmp_path / "o1")
        assert receiver.requests == []
        loud = Config(base_url=sb.base_url, notify=(receiver.url,), notify_on="always")
        leadsync_cli_like(src, loud, tmp_path / "o2")
    [request] = receiver.requests
    assert json.loads(request["body"])["text"].startswith("leadsync sync leads.csv: exit 0 (ok)")


def leadsync_cli_like(src: Path, config: Config, out: Path) -> int:
    """What the sync command does around a run: the notifier's start and finish."""
    from leadsync.notify import Notifier

    notifier = Notifier(
        config, os.environ, lambda level, msg: None, what=f"leadsync sync {src.name}"
    )
    notifier.start()
    result = leadsync.sync(src, config, out, api_key=DEFAULT_KEY)
    notifier.finish(int(result.exit_code), result.summary)
    return int(result.exit_code)


def test_a_mailto_notification_is_emailed_through_the_smtp_server(
    cli: Cli, tmp_path: Path, smtp: list[Any]
) -> None:
    src = export(tmp_path / "leads.csv", 3, bad=1)
    with Sandbox() as sb:
        result = cli("sync", src, "--notify", "mailto:ops@example.com,boss@example.com",
                     "--report-dir", tmp_path / "o", env=env_for(sb))  # fmt: skip
    assert result.exit_code == 1
    [message] = smtp
    assert message["To"] == "ops@example.com, boss@example.com"
    subject = "".join(str(message["Subject"]).splitlines()).strip()  # a long header is folded
    assert subject == "leadsync sync leads.csv: exit 1 (rows need attention): 2 updated, 1 invalid"
    text = message.get_payload()
    assert "first problems: row 2 not_a_number" in text and "Private" not in text


def test_an_input_that_is_missing_still_notifies_and_keeps_its_exit_code(
    cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    result = cli("sync", tmp_path / "gone.csv", "--notify", receiver.url, "--ping",
                 f"{receiver.url}/ping/abc", env={"LEADSYNC_API_KEY": "k"})  # fmt: skip
    assert result.exit_code == 2
    assert receiver.paths() == ["/ping/abc/start", "/ping/abc/2", "/"]
    text = json.loads(receiver.requests[2]["body"])["text"]
    assert (
        text
        == f"leadsync sync gone.csv: exit 2 (could not run): file not found: {tmp_path / 'gone.csv'}"
    )


def test_an_unreachable_or_stalling_receiver_never_changes_the_exit_code(
    cli: Cli, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    src = export(tmp_path / "leads.csv", 3)
    with Sandbox() as sb, Receiver(stall=30) as slow:
        started = time.monotonic()
        result = cli("sync", src, "--notify", dead, "--notify", slow.url, "--notify-on",
                     "always", "--report-dir", tmp_path / "o", env=env_for(sb))  # fmt: skip
        took = time.monotonic() - started
    assert result.exit_code == 0
    assert took < 12  # the notification budget (8 s), not the receiver's 30 s
    assert "notification to http://127.0.0.1" in result.stderr
    assert "not delivered" in result.stderr and "/hook" not in result.stderr  # no path


# -- the dead-man's switch -----------------------------------------------------------


def test_pings_start_then_success_or_the_exit_code(
    cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    ping = f"{receiver.url}/hc/uuid-1"
    with Sandbox() as sb:
        ok = cli("sync", export(tmp_path / "a.csv", 2), "--ping", ping, "--report-dir",
                 tmp_path / "o1", env=env_for(sb))  # fmt: skip
        bad = cli("sync", export(tmp_path / "b.csv", 2, bad=1), "--ping", ping,
                  "--report-dir", tmp_path / "o2", env=env_for(sb))  # fmt: skip
    assert (ok.exit_code, bad.exit_code) == (0, 1)
    assert receiver.paths() == [
        "/hc/uuid-1/start",
        "/hc/uuid-1",
        "/hc/uuid-1/start",
        "/hc/uuid-1/1",
    ]
    assert receiver.requests[1]["body"].startswith("leadsync sync a.csv: exit 0 (ok): 2 updated")


def test_a_run_stopped_by_sigterm_pings_exit_3(tmp_path: Path, receiver: Receiver) -> None:
    src = export(tmp_path / "leads.csv", 200)
    with Sandbox(SandboxConfig(latency=0.1)) as sb:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadsync", "sync", str(src), "--ping",
             f"{receiver.url}/hc", "--report-dir", str(tmp_path / "o"), "--concurrency", "2"],
            env={**os.environ, **env_for(sb)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_sandbox(sb, "applied_requests", 5, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 3
    assert receiver.paths() == ["/hc/start", "/hc/3"]
    assert "exit 3 (aborted)" in receiver.requests[1]["body"]


# -- metrics -------------------------------------------------------------------------


def test_the_metrics_file_is_prometheus_text_with_the_run_s_figures(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    src = export(tmp_path / "leads.csv", 4, bad=1)
    metrics = tmp_path / "leadsync.prom"
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url, metrics_file=str(metrics), job_name="nightly")
        assert leadsync_cli_like(src, cfg, tmp_path / "o") == 1
    samples = {
        (s.name, s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(metrics.read_text(encoding="utf-8"))
        for s in family.samples
    }
    assert samples["leadsync_run_rows", "updated"] == 3
    assert samples["leadsync_run_rows", "invalid"] == 1
    assert samples["leadsync_run_exit_code", None] == 1
    assert samples["leadsync_run_success", None] == 0
    assert samples["leadsync_run_requests", None] >= 4
    assert (
        samples["leadsync_run_end_timestamp_seconds", None]
        >= samples["leadsync_run_start_timestamp_seconds", None]
    )


# -- retention and erasure -------------------------------------------------------------


def test_old_runs_are_pruned_from_the_journal_and_their_report_folders(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    src = export(tmp_path / "leads.csv", 3)
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url)
        leadsync.sync(src, cfg, tmp_path / "old", api_key=DEFAULT_KEY, journal=journal)
        with Journal(journal) as book:
            gone = prune(book, 90 * 86400, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=91))
            assert book.runs() == [] and book.known("1000")[0]["status"] == "Contacted"
        # change detection survives: the same file is unchanged, a new status is sent
        again = leadsync.sync(src, cfg, tmp_path / "new", api_key=DEFAULT_KEY, journal=journal)
    assert gone == {"before_values": 3 * 5, "attempts": 3, "lookups": 0, "creates": 0, "runs": 1,
                    "report_folders": 1}  # fmt: skip
    assert not (tmp_path / "old").exists()
    assert again.summary["outcomes"]["unchanged"] == 3


def test_keep_runs_prunes_after_a_sync_and_keeps_recent_runs(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    src = export(tmp_path / "leads.csv", 2)
    with Sandbox() as sb:
        for out in ("o1", "o2"):
            result = cli("sync", src, "--journal", journal, "--keep-runs", "30d",
                         "--report-dir", tmp_path / out, "--json", env=env_for(sb))  # fmt: skip
            assert result.exit_code == 0
    assert json.loads(result.stdout)["pruned"] == {"runs": 0}
    assert len(Journal(journal).runs()) == 2 and (tmp_path / "o1").is_dir()


def test_forget_removes_one_person_and_the_others_change_detection_is_intact(
    cli: Cli, tmp_path: Path
) -> None:
    journal = tmp_path / "j.sqlite"
    src = export(tmp_path / "leads.csv", 3)
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url)
        leadsync.sync(src, cfg, tmp_path / "o1", api_key=DEFAULT_KEY, journal=journal)
        result = cli("forget", "--lead", "1001", "--journal", journal)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0] == (
            "forgot lead 1001 (1001): 4 field values, 1 questionnaire answers, 1 attempts, "
            "0 creates, 0 lookups"
        )
        assert f"still in the reports of {tmp_path / 'o1'}" in result.stdout
        with sqlite3.connect(journal) as db:
            left = {t: db.execute(f"SELECT count(*) FROM {t} WHERE lead_id = '1001'").fetchone()[0]
                    for t in ("lead_fields", "lead_pairs", "attempts")}  # fmt: skip
            others = db.execute("SELECT count(*) FROM lead_fields").fetchone()[0]
        assert left == {"lead_fields": 0, "lead_pairs": 0, "attempts": 0} and others == 8
        again = leadsync.sync(src, cfg, tmp_path / "o2", api_key=DEFAULT_KEY, journal=journal)
    seen = {r["lead_id"]: r["outcome"] for r in read_csv_report(tmp_path / "o2" / "successes.csv")}
    # the forgotten lead is sent again (its state is gone); the others are still known
    assert seen == {"1000": "unchanged", "1001": "updated", "1002": "unchanged"}
    assert again.exit_code == 0


def test_forget_by_email_removes_a_created_person(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    src = write_csv(
        tmp_path / "new.csv",
        [["type", "first_name", "last_name", "email", "postcode"],
         ["vendor", "Ann", "Lee", "Ann.Lee@example.com", "BS1 1AA"],
         ["vendor", "Bob", "Day", "bob@example.com", "BS2 2AA"]],
    )  # fmt: skip
    with Sandbox() as sb:
        cfg = Config(base_url=sb.base_url, create=True, check_offices=False)
        leadsync.sync(src, cfg, tmp_path / "o", api_key=DEFAULT_KEY, journal=journal)
        with Journal(journal) as book:
            gone = forget(book, email="ann.lee@EXAMPLE.com")
            assert book.creates.lead_of("email:bob@example.com") is not None
            assert book.creates.lead_of("email:ann.lee@example.com") is None
    assert gone["creates"] == 1 and gone["lead_fields"] == 3 and len(gone["leads"]) == 1


def test_forget_needs_exactly_one_person(cli: Cli, tmp_path: Path) -> None:
    result = cli("forget", "--lead", "1", "--email", "a@b.co", "--journal", tmp_path / "j")
    assert result.exit_code == 2 and "exactly one of" in result.stderr
