"""The app's gate over real HTTP on loopback: the token, the Host check (DNS rebinding),
CSRF on every request that changes something, the upload cap and the private folder,
the CSP, and the API key never in a response."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import requests

from leadsync.sandbox import DEFAULT_KEY
from tests.conftest import SAMPLE
from tests.uihelp import app_with_sandbox


def _session(server: object) -> requests.Session:
    s = requests.Session()
    r = s.get(server.url, allow_redirects=False)  # type: ignore[attr-defined]
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    return s


def _put_sample(s: requests.Session, server: object, csrf: str | None) -> requests.Response:
    headers = {"Accept": "application/json"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return s.put(
        f"{server.origin}/upload?name=leads.xlsx",  # type: ignore[attr-defined]
        data=(SAMPLE / "leads.xlsx").read_bytes(),
        headers=headers,
    )


def test_no_token_is_403_everywhere(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path) as (server, _):
        for path in ("/", "/runs", "/offices", "/static/htmx.min.js", "/file/x"):
            r = requests.get(server.origin + path)
            assert r.status_code == 403, path
            assert "token" in r.text
        wrong = requests.get(server.origin + "/?token=not-it", allow_redirects=False)
        assert wrong.status_code == 403
        r = requests.get(server.origin + "/", headers={"X-Leadsync-Token": server.secrets.token})
        assert r.status_code == 200  # the header form, for scripts


def test_wrong_host_is_refused_even_with_the_token(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path) as (server, _):
        s = _session(server)
        assert s.get(server.origin + "/").status_code == 200
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1:1"):
            r = s.get(server.origin + "/", headers={"Host": host})
            assert r.status_code == 403 and "Host" in r.text, host
        r = s.get(f"http://localhost:{server.port}/", headers={"Host": f"localhost:{server.port}"})
        assert r.status_code in (200, 403)  # its own name is served (the cookie is per host)


def test_state_changing_requests_need_the_csrf_token(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path) as (server, sb):
        s = _session(server)
        csrf = server.secrets.csrf
        assert _put_sample(s, server, None).status_code == 403
        assert _put_sample(s, server, "forged").status_code == 403
        assert not server.workspace.uploads
        # a cross-site form post: the cookie may ride along, the CSRF token cannot
        r = s.post(
            server.origin + "/key",
            data={"key": "attacker"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403
        r = s.post(
            server.origin + "/key",
            data={"key": "attacker"},
            headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf},
        )
        assert r.status_code == 403 and "another site" in r.text
        made = _put_sample(s, server, csrf)
        assert made.status_code == 200
        fid = made.json()["url"].rsplit("/", 1)[1]
        assert s.post(f"{server.origin}/file/{fid}/sync").status_code == 403
        assert sb.stats()["requests"] == 0  # nothing was sent


def test_uploads_are_capped_private_and_removed_on_exit(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path, max_upload=10_000) as (server, _):
        s = _session(server)
        big = _put_sample(s, server, server.secrets.csrf)  # 20 KB over a 10 KB cap
        assert big.status_code == 400 and "upload limit" in big.json()["error"]
        folder = server.workspace.folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [p.name for p in folder.iterdir()] == ["pid"]  # the refused upload left nothing
        small = tmp_path / "small.csv"
        small.write_text("id,first_name,last_name\n1001,Ann,Lee\n")
        r = s.put(
            f"{server.origin}/upload?name=../../small.csv",
            data=small.read_bytes(),
            headers={"X-CSRF-Token": server.secrets.csrf, "Accept": "application/json"},
        )
        assert r.status_code == 200
        (upload,) = server.workspace.uploads.values()
        assert upload.path.parent.parent == folder and upload.name == "small.csv"
        assert stat.S_IMODE(upload.path.stat().st_mode) == 0o600
        refused = s.put(
            f"{server.origin}/upload?name=run.sh",
            data=b"echo",
            headers={"X-CSRF-Token": server.secrets.csrf, "Accept": "application/json"},
        )
        assert refused.status_code == 400 and "not a spreadsheet" in refused.json()["error"]
    assert not folder.exists()


def test_strict_csp_and_no_cdn(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path) as (server, _):
        s = _session(server)
        r = s.get(server.origin + "/")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script>" not in r.text and not re.search(r"\son[a-z]+=", r.text)  # no inline code
        for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert src.startswith("/") or src.startswith("#"), src  # every asset is ours
        assert s.get(server.origin + "/static/htmx.min.js").status_code == 200


@pytest.mark.parametrize("key_from", ["environment", "typed in"])
def test_the_key_is_in_no_response(tmp_path: Path, key_from: str) -> None:
    with app_with_sandbox(tmp_path) as (server, sb):
        ws = server.workspace
        s = _session(server)
        if key_from == "typed in":
            ws._key, ws.key_source = None, "none"
            r = s.post(
                server.origin + "/key",
                data={"key": DEFAULT_KEY},
                headers={"X-CSRF-Token": server.secrets.csrf, "HX-Request": "true"},
            )
            assert r.status_code == 200 and "memory" in r.text
            assert DEFAULT_KEY not in r.text
        made = _put_sample(s, server, server.secrets.csrf)
        fid = made.json()["url"].rsplit("/", 1)[1]
        r = s.post(
            f"{server.origin}/file/{fid}/sync",
            headers={"X-CSRF-Token": server.secrets.csrf, "HX-Request": "true"},
        )
        job = r.headers["hx-redirect"]
        (j,) = ws.jobs.values()
        assert j.finished.wait(60)
        bodies = [made.text, r.text]
        seen: set[str] = set()
        todo = [
            "/",
            f"/file/{fid}",
            f"/file/{fid}/mapping",
            f"/file/{fid}/plan",
            job,
            "/runs",
            "/offices",
        ]
        while todo:  # every page, and every page it links to
            path = todo.pop()
            if path in seen or not path.startswith("/") or path.startswith("/static"):
                continue
            seen.add(path)
            page = s.get(server.origin + path)
            assert page.status_code == 200, path
            bodies.append(page.text)
            bodies.extend(f"{k}: {v}" for k, v in page.headers.items())
            todo.extend(re.findall(r'href="([^"#]+)"', page.text))
        assert len(seen) > 12
        assert all(DEFAULT_KEY not in b for b in bodies)
        assert sb.stats()["applied_requests"] == 191


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_leadsync_ui_command_serves_loopback_and_cleans_up_when_stopped(
    tmp_path: Path, stop: str
) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "LEADSYNC_API_KEY": DEFAULT_KEY, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadsync", "ui", "--no-browser"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()  # printed once the server accepts requests
        found = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=\S+)", line)
        assert found, line
        url, port = found.group(1), int(found.group(2))
        s = requests.Session()
        assert s.get(url).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/").status_code == 403
        (private,) = tmp_path.glob("leadsync-ui-*")
        proc.send_signal(getattr(signal, stop))  # Ctrl-C, or systemd/kill stopping it
        assert proc.wait(timeout=30) == 0
        assert not private.exists()  # the uploads' folder went with the server
        assert DEFAULT_KEY not in proc.stderr.read() + proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_mapping_file_upload_is_capped_and_checked(tmp_path: Path) -> None:
    with app_with_sandbox(tmp_path) as (server, _):
        s = _session(server)
        fid = _put_sample(s, server, server.secrets.csrf).json()["url"].rsplit("/", 1)[1]
        url = f"{server.origin}/file/{fid}/mapping-file?name=m.toml"
        headers = {"X-CSRF-Token": server.secrets.csrf, "Accept": "application/json"}
        big = s.put(url, data=b"# " + b"x" * (2 << 20), headers=headers)
        assert big.status_code == 400 and "over 1 MB" in big.json()["error"]
        bad = s.put(url, data=b"[columns\n", headers=headers)
        assert bad.status_code == 400 and "not valid TOML" in bad.json()["error"]
        good = s.put(url, data=b'[values.gdpr_checkbox]\n"maybe" = false\n', headers=headers)
        assert good.status_code == 200
        (upload,) = server.workspace.uploads.values()
        assert upload.mapping_name == "m.toml" and upload.checked is not None
        assert upload.checked.summary["outcomes"]["invalid"] == 7  # the mapping applied


def test_a_port_in_use_is_one_line_and_exit_2(cli: object, tmp_path: Path) -> None:
    import socket
    import tempfile

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    folders = set(Path(tempfile.gettempdir()).glob("leadsync-ui-*"))
    try:
        port = taken.getsockname()[1]
        result = cli("ui", "--no-browser", "--port", str(port))  # type: ignore[operator]
        assert result.exit_code == 2
        assert f"port {port} is in use" in result.output and "Traceback" not in result.output
        assert set(Path(tempfile.gettempdir()).glob("leadsync-ui-*")) == folders  # none left
    finally:
        taken.close()


def test_a_killed_servers_folder_is_removed_by_the_next_start(tmp_path: Path) -> None:
    import subprocess
    import sys
    import tempfile

    from leadsync.ui.workspace import remove_orphans

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = Path(tempfile.mkdtemp(prefix="leadsync-ui-"))
    (orphan / "pid").write_text(dead.stdout.strip())  # its server is gone (kill -9)
    (orphan / "upload.csv").write_text("id,first_name\n1001,Ann\n")
    alive = Path(tempfile.mkdtemp(prefix="leadsync-ui-"))
    (alive / "pid").write_text(str(__import__("os").getpid()))  # a server still running
    try:
        assert orphan in remove_orphans()
        assert not orphan.exists() and alive.exists()
    finally:
        import shutil

        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)
