"""Shared helpers: real files written to disk, the real CLI run in-process."""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from leadsync.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"

NAMES = ["id", "first_name", "last_name"]


def write_xlsx(
    path: Path,
    rows: Sequence[Sequence[Any]],
    *,
    sheet: str = "Leads",
    before: Sequence[tuple[str, str]] = (),
    number_formats: dict[str, str] | None = None,
) -> Path:
    """Write ``rows`` (header first) with openpyxl; ``before`` adds (name, state) sheets first."""
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for name, state in before:
        extra = book.create_sheet(name)
        extra.append(["id", "first_name"])
        extra.append(["999", "Hidden"])
        extra.sheet_state = state  # type: ignore[assignment]
    ws = book.create_sheet(sheet)
    for r in rows:
        ws.append(list(r))
    for ref, fmt in (number_formats or {}).items():
        ws[ref].number_format = fmt
    book.save(path)
    return path


def write_csv(
    path: Path,
    rows: Sequence[Sequence[Any]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    newline: str = "\r\n",
) -> Path:
    """Write real CSV bytes in ``encoding`` (``utf-8-sig`` for a BOM)."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    path.write_bytes(out.getvalue().encode(encoding))
    return path


# Runs the CLI in a fresh process and prints its own high-water mark (VmHWM) as it exits:
# ru_maxrss of the children would count the forked copy of the test process too.
_MEASURED = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('HWM', line.split()[1], file=sys.stderr)\n"
    "atexit.register(hwm)\n"
    "from leadsync.cli import run\n"
    "sys.argv = ['leadsync'] + sys.argv[1:]\n"
    "run()\n"
)


def run_measured(
    *args: Any, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[Any, int]:
    """``leadsync ARGS`` as a real process: (the completed process, its peak RSS in MB).
    The process must not die of a signal (calamine aborts on an allocation it cannot make)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *map(str, args)],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode >= 0 and "HWM " in proc.stderr, proc.stderr[-2000:]
    return proc, int(proc.stderr.split("HWM ")[1].split()[0]) // 1024


def wait_until_sandbox(sb: Any, key: str, at_least: int, proc: Any, timeout: float = 60) -> None:
    """Readiness check: poll the sandbox's stats until ``key`` reaches ``at_least`` while
    the client process ``proc`` is still running (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while sb.stats()[key] < at_least:
        assert time.monotonic() < deadline, f"{key} never reached {at_least}"
        assert proc.poll() is None, "the client process ended early"
        time.sleep(0.02)


def kill_then_resume(
    sb: Any, args: list[str], tmp_path: Path, key: str, at_least: int
) -> tuple[int, Any]:
    """`leadsync sync ARGS` against ``sb`` as a real process, ``kill -9``ed once the
    sandbox's ``key`` stat reaches ``at_least``, then run again to its end (reports in
    o1 and o2): the stat at the kill, and the second run's CompletedProcess."""
    import os
    import signal
    import subprocess
    import sys

    from leadsync.sandbox import DEFAULT_KEY

    env = {**os.environ, "LEADSYNC_API_KEY": DEFAULT_KEY, "LEADSYNC_BASE_URL": sb.base_url}
    cmd = [sys.executable, "-m", "leadsync", "sync", *args]
    proc = subprocess.Popen(
        [*cmd, "--report-dir", str(tmp_path / "o1")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_sandbox(sb, key, at_least, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = int(sb.stats()[key])
    resumed = subprocess.run(
        [*cmd, "--report-dir", str(tmp_path / "o2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return killed_at, resumed


@contextlib.contextmanager
def sandbox_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Any, str, str]]:
    """`leadsync sandbox --port 0 ARGS` as a real process: (process, first stderr line, base URL).

    Its first line says where it listens, once the socket is bound: that is the readiness check.
    """
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "leadsync", "sandbox", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        yield proc, first, first.split(" listening on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def lead_log(sb: Any) -> list[dict[str, Any]]:
    """The sandbox's record of requests about leads (not the offices check)."""
    return [e for e in sb.requests_log() if "/leads/" in e["path"]]


def read_csv_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(autouse=True)
def _own_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the user's real journal: each gets its own by default."""
    monkeypatch.setenv("LEADSYNC_JOURNAL", str(tmp_path / "default-journal.sqlite"))


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run the real CLI in-process and return click's Result (exit code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return run
