"""Hostile settings and hostile servers (issue 21): each case reproduces a defect that
leaked the key, lost a row, crashed or hung, against a real loopback server."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.config import Config
from leadsync.defaults import MAX_WAIT
from leadsync.quota import retry_after_seconds
from tests.conftest import read_csv_report, run_measured, write_csv

Reply = Callable[[BaseHTTPRequestHandler], None]
KEY = "hostile-test-key-123"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        server: Any = self.server
        server.seen.append((self.command, self.path, self.headers.get("X-API-KEY")))
        server.reply(self)

    do_GET = do_PATCH = do_POST = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on a huge or endless answer is what the tests want


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, **headers: str) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def hostile() -> Iterator[Callable[..., Any]]:
    """Start a loopback server whose every answer is ``reply(handler)``."""
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Reply, host: str = "127.0.0.1") -> Any:
        server: Any = _Server((host, 0), _Handler)
        server.reply, server.seen = reply, []
        server.base_url = f"http://{host}:{server.server_address[1]}/api/v103"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def export(tmp_path: Path, rows: int = 3, email: bool = False) -> Path:
    header = ["id", "first_name", "last_name", "status"] + (["email"] if email else [])
    body = [
        ["" if email else str(1000 + i), f"F{i}", f"L{i}", "New"]
        + ([f"p{i}@example.com"] if email else [])
        for i in range(rows)
    ]
    return write_csv(tmp_path / "in.csv", [header, *body])


def quick(base_url: str, **settings: Any) -> Config:
    return Config(base_url=base_url, check_offices=False, backoff_initial=0.01, **settings)


# -- the base URL and the key: nothing may carry the key elsewhere ------------------


def test_d13_a_backslash_in_the_base_url_is_refused_and_the_other_host_gets_nothing(
    hostile: Callable[..., Any], tmp_path: Path, cli: Any
) -> None:
    decoy = hostile(lambda h: send_json(h, 200, {}), host="127.0.0.2")
    real = hostile(lambda h: send_json(h, 200, {}))
    port = decoy.server_address[1]
    url = f"http://127.0.0.2:{port}\\@127.0.0.1:{real.server_address[1]}/api/v103"
    result = cli(
        "sync", export(tmp_path), "--report-dir", tmp_path / "o",
        env={"LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": url},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "has a backslash" in result.stderr and len(result.stderr.splitlines()) == 1
    assert decoy.seen == [] and real.seen == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://user:s3cret-pw@127.0.0.1:9/api/v103", "carries a user name or password"),
        ("http://127.0.0.1:9/api/v103?tenant=7", "has a query string or fragment"),
        ("http://127.0.0.1:9/api/v103#x", "has a query string or fragment"),
        ("http://127.0.0.1:9/api v103", "has a backslash, a space or a control character"),
    ],
)
def test_d14_userinfo_and_query_strings_are_refused_without_quoting_a_password(
    url: str, says: str, tmp_path: Path, cli: Any
) -> None:
    result = cli(
        "sync", export(tmp_path), "--report-dir", tmp_path / "o", "--json",
        env={"LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": url},
    )  # fmt: skip
    assert result.exit_code == 2
    assert says in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("abc\ndef-the-rest", "has a line break or another control character"),
        ("abc\rdef-the-rest", "has a line break or another control character"),
        ("kéy-with-accent", "has non-ASCII characters"),
    ],
)
def test_d11_d12_a_key_that_cannot_be_a_header_is_refused_and_never_quoted(
    key: str, says: str, tmp_path: Path, cli: Any, hostile: Callable[..., Any]
) -> None:
    server = hostile(lambda h: send_json(h, 200, {}))
    key_file = tmp_path / "key"
    key_file.write_text(key, encoding="utf-8")
    key_file.chmod(0o600)
    for how in (["--api-key-file", str(key_file)], []):
        result = cli(
            "sync", export(tmp_path), "--report-dir", tmp_path / "o", *how,
            env={"LEADSYNC_API_KEY": key, "LEADSYNC_BASE_URL": server.base_url},
        )  # fmt: skip
        assert result.exit_code == 2, result.stderr
        assert says in result.stderr and len(result.stderr.splitlines()) == 1
        assert "def-the-rest" not in result.stderr and "kéy" not in result.stderr
    assert server.seen == []


def test_d12_a_key_file_that_is_huge_or_not_text_is_one_line(tmp_path: Path, cli: Any) -> None:
    binary = tmp_path / "binary-key"
    binary.write_bytes(b"\xff\xfe\x00key")
    for path, says in (("/dev/zero", "is over 4 KB"), (str(binary), "is not UTF-8 text")):
        started = time.monotonic()
        result = cli(
            "sync", export(tmp_path), "--api-key-file", path,
            env={"LEADSYNC_BASE_URL": "http://127.0.0.1:9/api/v103"},
        )  # fmt: skip
        assert result.exit_code == 2 and says in result.stderr
        assert time.monotonic() - started < 10


# -- strange answers end as outcomes, never as crashes -------------------------------


def test_d17_infinite_rate_limit_headers_do_not_turn_a_200_into_a_failure(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    server = hostile(
        lambda h: send_json(h, 200, {}, X_RateLimit_Limit="inf", X_RateLimit_Remaining="-inf")
    )
    result = leadsync.sync(export(tmp_path), quick(server.base_url), tmp_path / "o", api_key=KEY)
    assert result.summary["outcomes"]["updated"] == 3 and result.exit_code == 0


def test_d18_an_office_id_of_superscript_two_is_listed_not_a_crash(
    hostile: Callable[..., Any], cli: Any
) -> None:
    server = hostile(lambda h: send_json(h, 200, {"data": [{"id": "²", "name": "X"}, {"id": 7}]}))
    result = cli(
        "offices", "--json", env={"LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": server.base_url}
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"id": "²", "name": "X"}, {"id": 7, "name": ""}]


def test_d19_a_read_back_whose_questionnaire_is_not_a_list_ends_unknown(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    def reply(h: BaseHTTPRequestHandler) -> None:
        if h.command == "PATCH":
            send_json(h, 500, {"message": "boom"})  # ambiguous: the lead is read back
        else:
            send_json(h, 200, {"data": {"id": "1000", "questionnaire": 5}})

    server = hostile(reply)
    src = write_csv(
        tmp_path / "q.csv",
        [["id", "first_name", "last_name", "questionnaire: Budget?"], ["1000", "A", "B", "£1"]],
    )
    result = leadsync.sync(src, quick(server.base_url), tmp_path / "o", api_key=KEY)
    rows = read_csv_report(tmp_path / "o" / "failures.csv")
    assert [(r["outcome"], r["code"]) for r in rows] == [("unknown", "ambiguous")]
    assert result.exit_code == 1


def test_d20_a_lookup_answering_a_number_fails_that_row_and_the_run_goes_on(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    server = hostile(lambda h: send_json(h, 200, {"data": 5}))
    config = quick(server.base_url, match_by="email", max_attempts=1)
    result = leadsync.sync(export(tmp_path, email=True), config, tmp_path / "o", api_key=KEY)
    rows = read_csv_report(tmp_path / "o" / "failures.csv")
    assert {(r["outcome"], r["code"]) for r in rows} == {("failed", "lookup_failed")}
    assert len(rows) == 3 and result.exit_code == 1


# -- unbounded answers are bounded ---------------------------------------------------


def _gzip_bomb(megabytes: int) -> bytes:
    """``megabytes`` of zeros, gzipped a block at a time (~1 KB on the wire per MB)."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(megabytes)), packer.flush()])


def test_d15_huge_and_gzip_bomb_bodies_are_cut_off_and_the_200_stands(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    """A 1 GB gzip bomb and a 64 MB plain body: the sync (a real process, its own peak
    memory measured by the kernel) stays under 300 MB and the 200s stand."""
    bomb = _gzip_bomb(1024)

    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if h.path.endswith("/leads/1000"):
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(bomb)))
            h.end_headers()
            h.wfile.write(bomb)
        else:  # 64 MB of plain body
            h.send_header("Content-Length", str(64 << 20))
            h.end_headers()
            block = b" " * (1 << 20)
            try:
                for _ in range(64):
                    h.wfile.write(block)
            except OSError:
                pass  # the client hung up once it had read enough: that is the point

    server = hostile(reply)
    env = {**os.environ, "LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": server.base_url}
    started = time.monotonic()
    proc, peak = run_measured(
        "sync", export(tmp_path), "--no-check-offices", "--report-dir", tmp_path / "o", "--json",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outcomes"]["updated"] == 3
    assert peak < 300, f"peak {peak} MB"
    assert time.monotonic() - started < 60


def test_d16_a_trickling_body_ends_at_the_request_deadline(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        _trickle(h, b" ", 200)  # one byte every 0.1 s, for up to 20 s: bounded

    result, elapsed = _sync_with_deadline(hostile(reply), tmp_path)
    assert result.summary["outcomes"]["updated"] == 3
    assert elapsed < 8  # per-read timeouts alone would take 20 s


def _trickle(h: BaseHTTPRequestHandler, data: bytes, times: int) -> bool:
    """Send ``data`` ``times`` times, 0.1 s apart; False once the client hung up."""
    try:
        for _ in range(times):
            h.wfile.write(data)
            h.wfile.flush()
            time.sleep(0.1)
    except OSError:
        return False
    return True


def _sync_with_deadline(server: Any, tmp_path: Path) -> tuple[Any, float]:
    """Three rows against ``server``: 5 s read timeout, a 1 s deadline per request."""
    config = quick(server.base_url, read_timeout=5, request_deadline=1, concurrency=3)
    started = time.monotonic()
    result = leadsync.sync(export(tmp_path), config, tmp_path / "o", api_key=KEY)
    return result, time.monotonic() - started


def test_d16_headers_trickled_a_byte_at_a_time_end_at_the_request_deadline(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    """Every read gets a byte well within the read timeout, so only a deadline on the
    whole request ends it: each of the 6 attempts takes the 1 s deadline. (A cut-off
    header must not pass for a whole answer: http.client reads the shut-down socket as
    the end of the headers, and the rows came out "updated".)"""

    def reply(h: BaseHTTPRequestHandler) -> None:
        if _trickle(h, b"HTTP/1.1 200 OK\r\nX-Slow: ", 1) and _trickle(h, b"a", 300):
            _trickle(h, b"\r\nContent-Length: 2\r\n\r\n{}", 1)  # 30 s of header, then

    result, elapsed = _sync_with_deadline(hostile(reply), tmp_path)
    assert result.summary["outcomes"]["failed"] == 3, result.summary["outcomes"]
    failures = read_csv_report(tmp_path / "o" / "failures.csv")
    assert [row["code"] for row in failures] == ["gave_up"] * 3
    assert all(
        row["message"] == "gave up after 6 attempt(s): no complete answer within the request "
        "deadline (1 s)"
        for row in failures
    ), failures
    assert elapsed < 20, elapsed  # a byte every 0.1 s under a 5 s read timeout: 30 s each


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("999999", MAX_WAIT),
        ("inf", MAX_WAIT),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_WAIT),
        ("nan", None),
        ("-5", 0.0),
        ("2", 2.0),
    ],
)
def test_d16_server_asked_waits_are_capped(value: str, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_the_hostile_server_itself_answers(hostile: Callable[..., Any]) -> None:
    """The fixture is real HTTP on loopback: a plain GET gets its JSON back."""
    import requests

    server = hostile(lambda h: send_json(h, 200, {"ok": True}))
    assert requests.get(server.base_url + "/x", timeout=5).json() == {"ok": True}
    assert os.environ.get("LEADSYNC_API_KEY") != KEY  # nothing leaked into the environment


# -- files holding personal data -----------------------------------------------------


def test_d7_a_link_planted_in_the_report_folder_is_not_followed(tmp_path: Path, cli: Any) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    victim.chmod(0o644)
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.csv").symlink_to(victim)
    result = cli("validate", export(tmp_path), "--report-dir", out)
    assert result.exit_code == 2
    assert "is a symbolic link: refusing to write personal data through it" in result.stderr
    assert victim.read_text(encoding="utf-8") == "precious"
    assert victim.stat().st_mode & 0o777 == 0o644


def test_d8_a_journal_that_is_a_link_is_refused(tmp_path: Path, cli: Any) -> None:
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"precious")
    journal = tmp_path / "j.sqlite"
    journal.symlink_to(victim)
    result = cli(
        "sync", export(tmp_path), "--journal", journal,
        env={"LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": "http://127.0.0.1:9/api/v103"},
    )  # fmt: skip
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    assert victim.read_bytes() == b"precious"


def test_d10_the_journal_its_wal_and_lock_are_owner_only(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    server = hostile(lambda h: send_json(h, 200, {}))
    journal = tmp_path / "state" / "j.sqlite"
    leadsync.sync(
        export(tmp_path), quick(server.base_url), tmp_path / "o", api_key=KEY, journal=journal
    )
    made = [p for p in journal.parent.iterdir()]
    assert {p.name for p in made} >= {"j.sqlite", "j.sqlite.lock"}
    assert {p.name: p.stat().st_mode & 0o777 for p in made} == {p.name: 0o600 for p in made}


def test_d9_another_programs_database_is_refused_untouched(tmp_path: Path, cli: Any) -> None:
    import hashlib
    import sqlite3

    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
        db.execute("INSERT INTO customers VALUES ('Ann')")
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    result = cli(
        "sync", export(tmp_path), "--journal", foreign,
        env={"LEADSYNC_API_KEY": KEY, "LEADSYNC_BASE_URL": "http://127.0.0.1:9/api/v103"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "is not a leadsync journal" in result.stderr
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.db")) == ["app.db"]


def test_d21_a_servers_field_name_is_neutralised_in_failures_csv(
    hostile: Callable[..., Any], tmp_path: Path
) -> None:
    server = hostile(
        lambda h: send_json(h, 422, {"message": "bad", "errors": {"=HYPERLINK(1)": ["no"]}})
    )
    leadsync.sync(export(tmp_path, rows=1), quick(server.base_url), tmp_path / "o", api_key=KEY)
    rows = read_csv_report(tmp_path / "o" / "failures.csv")
    assert [(r["outcome"], r["field"]) for r in rows] == [("rejected", "'=HYPERLINK(1)")]


@pytest.mark.parametrize(
    "name", ["Q1/2025:[x]", "'Leads'", "An export sheet named at length, 40 c"]
)
def test_d4_a_sheet_name_excel_refuses_does_not_crash_the_report(
    tmp_path: Path, cli: Any, name: str
) -> None:
    """A workbook from a lax writer (its sheet renamed in workbook.xml): report.xlsx is
    written under a name Excel accepts."""
    import zipfile

    from openpyxl import load_workbook

    from tests.conftest import write_xlsx

    plain = write_xlsx(tmp_path / "plain.xlsx", [["id", "first_name", "last_name"], [1, "A", "B"]])
    odd = tmp_path / "odd.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(odd, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/workbook.xml":
                escaped = name.replace("&", "&amp;").replace("'", "&apos;")
                data = data.replace(b'name="Leads"', f'name="{escaped}"'.encode())
            out.writestr(item, data)
    result = cli("validate", odd, "--report-dir", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    sheets = load_workbook(tmp_path / "o" / "report.xlsx", read_only=True).sheetnames
    assert len(sheets[0]) <= 31 and not set("[]:*?/\\") & set(sheets[0]) and sheets[1] == "Summary"


def test_d22_a_huge_header_is_not_echoed_whole(tmp_path: Path, cli: Any) -> None:
    src = write_csv(
        tmp_path / "wide.csv",
        [["id", "first_name", "last_name", "x" * (900 << 10)], ["1", "A", "B", "y"]],
    )
    result = cli("validate", src, "--report-dir", tmp_path / "o")
    assert result.exit_code == 0
    assert len(result.stdout) < 4000
    summary = (tmp_path / "o" / "summary.json").read_text(encoding="utf-8")
    assert len(summary) < 8000 and "more characters" in summary


def test_d22_a_header_line_past_the_limit_is_refused_before_it_is_parsed(
    tmp_path: Path,
) -> None:
    """A 100 MB first line: it took 1.6 GB and 11 s to read, parse and report (300 MB:
    5 GB). Refused from its first megabyte, in a process whose peak memory is measured."""
    src = tmp_path / "huge-header.csv"
    with src.open("wb") as fh:
        fh.write(b"id,first_name,last_name,")
        block = b"x" * (1 << 20)
        for _ in range(100):
            fh.write(block)
        fh.write(b"\r\n1,A,B,y\r\n")
    started = time.monotonic()
    proc, peak = run_measured("validate", src, "--report-dir", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "leadsync: error: huge-header.csv: the first line (the header row) is longer than "
        "1 MB, leadsync's limit for a header"
    )
    assert peak < 200 and time.monotonic() - started < 20


def test_d6_an_unclosed_quote_is_an_input_error_naming_its_line(tmp_path: Path, cli: Any) -> None:
    src = tmp_path / "runaway.csv"
    src.write_bytes(
        b'id,first_name,last_name,notes\r\n1000,A,B,ok\r\n1001,C,D,"unclosed\r\n'
        + b"".join(b"%d,E,F,x\r\n" % (1002 + i) for i in range(5))
    )
    result = cli("validate", src, "--report-dir", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr == (
        'leadsync: error: runaway.csv: a quote (") opened on line 3 is never closed, so the '
        "rest of the file would be read as one cell: close it, or remove it\n"
    )


def test_d6_a_bare_inch_mark_in_an_unquoted_cell_is_still_text(tmp_path: Path, cli: Any) -> None:
    src = tmp_path / "tv.csv"
    src.write_bytes(b'id,first_name,last_name,notes\r\n1000,A,B,12" TV\r\n1001,C,D,x\r\n')
    result = cli("validate", src, "--report-dir", tmp_path / "o")
    assert result.exit_code == 0 and "valid                 2" in result.stdout


def test_d21_formulas_behind_spaces_or_in_full_width_are_neutralised(
    tmp_path: Path, cli: Any
) -> None:
    """In both reports, whichever path (columnar or row by row) wrote the row."""
    cells = ["  =HYPERLINK(1)", "\n+1", "\uff1dSUM(1)", "\uff20x", " plain"]
    rows = [["id", "first_name", "last_name", "Notes"]]
    rows += [[str(1000 + i), "A", "B", c] for i, c in enumerate(cells)]
    rows += [["", "A", "B", cells[0]]]  # no id: invalid, so in failures.csv
    src = write_csv(tmp_path / "f.csv", rows)
    assert cli("validate", src, "--report-dir", tmp_path / "o").exit_code == 1
    ok = [r["Notes"] for r in read_csv_report(tmp_path / "o" / "successes.csv")]
    assert ok == ["'" + c for c in cells[:4]] + [" plain"]
    [bad] = read_csv_report(tmp_path / "o" / "failures.csv")
    assert bad["Notes"] == "'" + cells[0]


def test_d23_a_file_wider_than_excel_keeps_leadsyncs_own_columns(tmp_path: Path, cli: Any) -> None:
    from openpyxl import load_workbook

    extra = [f"c{i}" for i in range(20_000)]
    src = write_csv(
        tmp_path / "wide.csv",
        [
            ["id", "first_name", "last_name", *extra],
            ["1", "A", "B", *extra],
            ["", "C", "D", *extra],
        ],
    )
    assert cli("validate", src, "--report-dir", tmp_path / "o").exit_code == 1
    book = load_workbook(tmp_path / "o" / "report.xlsx", read_only=True)
    header = next(book.worksheets[0].iter_rows(max_row=1, values_only=True))
    assert len(header) == 16_384 and header[:2] == ("leadsync outcome", "leadsync problems")
    outcomes = [r[0] for r in book.worksheets[0].iter_rows(min_row=2, values_only=True)]
    assert outcomes == ["valid", "invalid"]
    notes = [r[0] for r in book["Summary"].iter_rows(values_only=True) if r and r[0]]
    assert any("more columns are in the CSV reports only" in str(n) for n in notes)
