"""Sending throughput against the sandbox with 100 ms latency (spec §9), three scenarios:

    python benchmarks/throughput.py [--seconds 40] [--only pinned|window|bucket]

1. pinned: `leadsync sync --rate 20` against a 20 req/s token bucket (burst 2)
   target: >= 0.97 of the limit, < 0.5% of requests answered 429
2. window: adaptive default against a Laravel-style window (200 per 10 s, with headers)
   target: every full window >= 95% used, < 0.5% 429s
3. bucket: adaptive default against a 20 req/s token bucket with no rate headers
   target: steady state (after the first 10 s) >= 0.85 of the limit, < 3% 429s

Each leadsync figure is printed beside a naive sequential `requests` loop measured in
the same run against the same server (the baseline). The sandbox runs as its own
process (`leadsync sandbox`); leadsync runs as the real CLI.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

KEY = "sandbox-key"
LATENCY = 0.1


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadsync",
                "sandbox",
                "--port",
                "0",
                "--latency",
                str(LATENCY),
                "--leads",
                "100000-199999",
                *args,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.base = self.proc.stderr.readline().split(" listening on ")[1].split()[0]
        self.admin = self.base.replace("/api/v103", "/_sandbox")

    def log(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.admin}/log", timeout=30).json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def write_leads(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "first_name", "last_name", "status"])
        for i in range(n):
            w.writerow([100000 + i, f"First{i}", f"Last{i}", "Contacted"])


def run_leadsync(server: Server, src: Path, *flags: str, seconds: float) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "LEADSYNC_API_KEY": KEY,
        "LEADSYNC_BASE_URL": server.base,
        "LEADSYNC_JOURNAL": str(out / "journal.sqlite"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadsync",
            "sync",
            str(src),
            "--report-dir",
            str(out),
            "--json",
            *flags,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: a graceful stop, reports written
        stdout, _ = proc.communicate()
    return dict(json.loads(stdout))


def naive(server: Server, seconds: float) -> list[dict[str, Any]]:
    """The baseline: one requests.Session, one PATCH after another, no throttle."""
    s = requests.Session()
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        s.patch(
            f"{server.base}/leads/{100000 + i % 90000}",
            json={"first_name": "A", "last_name": "B"},
            headers={"X-API-KEY": KEY},
            timeout=10,
        )
        i += 1
    return server.log()


def rate_of(log: list[dict[str, Any]], t_from: float = 0.0) -> tuple[float, float, int]:
    """Accepted requests/s over the span, the share answered 429, requests counted."""
    entries = [e for e in log if e["t"] >= t_from]
    if len(entries) < 2:
        return 0.0, 0.0, len(entries)
    span = entries[-1]["t"] - entries[0]["t"]
    ok = sum(1 for e in entries if e["status"] != 429)
    limited = sum(1 for e in entries if e["status"] == 429)
    return (ok - 1) / span if span > 0 else 0.0, limited / len(entries), len(entries)


def windows(log: list[dict[str, Any]], limit: int, length: float) -> list[int]:
    """Accepted requests per server window (a window opens at its first request)."""
    counts: list[int] = []
    start = None
    for e in log:
        if start is None or e["t"] - start >= length:
            start = e["t"]
            counts.append(0)
        if e["status"] != 429:
            counts[-1] += 1
    return counts


def scenario_pinned(seconds: float, workdir: Path) -> None:
    print("pinned: --rate 20 against a 20 req/s token bucket (burst 2), 100 ms latency")
    src = workdir / "pinned.csv"
    write_leads(src, int(seconds * 20) + 50)
    server = Server("--rate-limit", "20", "--burst", "2")
    try:
        summary = run_leadsync(server, src, "--rate", "20", seconds=seconds)
        rate, limited, n = rate_of(server.log(), 2.0)
    finally:
        server.stop()
    base = Server("--rate-limit", "20", "--burst", "2")
    try:
        brate, blimited, bn = rate_of(naive(base, min(seconds, 15)), 2.0)
    finally:
        base.stop()
    print(
        f"  leadsync : {rate:6.2f} req/s = {rate / 20:.3f} of the limit, 429s {limited:.2%} of {n} "
        f"(target >= 0.97, < 0.5%)  [summary: {summary['sending']['achieved_rate']}/s]"
    )
    print(
        f"  baseline : {brate:6.2f} req/s = {brate / 20:.3f} of the limit, 429s {blimited:.2%} of {bn}"
    )


def scenario_window(seconds: float, workdir: Path) -> None:
    print("window: adaptive default against 200 per 10 s (Laravel-style, X-RateLimit-* headers)")
    src = workdir / "window.csv"
    write_leads(src, int(seconds * 20) + 400)
    server = Server("--rate-limit", "200", "--window", "10")
    try:
        summary = run_leadsync(server, src, seconds=seconds)
        log = server.log()
    finally:
        server.stop()
    counts = windows(log, 200, 10.0)
    full = counts[:-1]  # the last window is cut short by the end of the run
    _, limited, n = rate_of(log)
    base = Server("--rate-limit", "200", "--window", "10")
    try:
        blog = naive(base, min(seconds, 25))
    finally:
        base.stop()
    bcounts = windows(blog, 200, 10.0)[:-1]
    _, blimited, bn = rate_of(blog)
    print(
        f"  leadsync : full windows used {[f'{c / 200:.0%}' for c in full]} "
        f"(min {min(full) / 200 if full else 0:.3f}), 429s {limited:.2%} of {n} (target >= 0.95, < 0.5%)"
        f"  [summary: {summary['sending']['achieved_rate']}/s, {summary['sending']['rate_limited_429']} x 429]"
    )
    print(
        f"  baseline : full windows used {[f'{c / 200:.0%}' for c in bcounts]}, 429s {blimited:.2%} of {bn}"
    )


def scenario_bucket(seconds: float, workdir: Path) -> None:
    print(
        "bucket: adaptive default against a 20 req/s token bucket, no rate headers, no Retry-After"
    )
    src = workdir / "bucket.csv"
    write_leads(src, int(seconds * 25) + 50)
    flags = ("--rate-limit", "20", "--burst", "2", "--no-rate-headers", "--no-retry-after")
    server = Server(*flags)
    try:
        summary = run_leadsync(server, src, seconds=seconds)
        log = server.log()
    finally:
        server.stop()
    rate, limited, n = rate_of(log, 10.0)
    base = Server(*flags)
    try:
        brate, blimited, bn = rate_of(naive(base, min(seconds, 15)), 2.0)
    finally:
        base.stop()
    print(
        f"  leadsync : steady state {rate:6.2f} req/s = {rate / 20:.3f} of the limit, 429s {limited:.2%} "
        f"of {n} (target >= 0.85, < 3%)  [summary: {summary['sending']['rate_limited_429']} x 429 in all]"
    )
    print(
        f"  baseline : {brate:6.2f} req/s = {brate / 20:.3f} of the limit, 429s {blimited:.2%} of {bn}"
    )


def scenario_journal(seconds: float, workdir: Path) -> None:
    print("journal: the cost of writing the journal (fsync before and after each send)")
    import leadsync
    from leadsync.config import Config

    n = 1500
    src = workdir / "journal.csv"
    write_leads(src, n)
    figures = {}
    for label in ("without journal", "with journal", "without journal ", "with journal "):
        server = Server("--latency", "0")
        try:
            cfg = Config(
                base_url=server.base, rate=None, max_rate=2000, start_rate=2000, concurrency=8
            )
            journal = (
                workdir / f"j-{time.monotonic_ns()}.sqlite" if label.startswith("with ") else None
            )
            t0 = time.perf_counter()
            result = leadsync.sync(
                src, cfg, workdir / f"out-{time.monotonic_ns()}", api_key=KEY, journal=journal
            )
            elapsed = time.perf_counter() - t0
            assert result.summary["outcomes"]["updated"] == n, result.summary["outcomes"]
        finally:
            server.stop()
        figures.setdefault(label.strip(), []).append(n / elapsed)
    plain = max(figures["without journal"])
    journalled = max(figures["with journal"])
    print(f"  without journal : {plain:7.1f} rows/s (best of 2, zero-latency sandbox, 8 in flight)")
    print(
        f"  with journal    : {journalled:7.1f} rows/s = {journalled / plain:.2f} of the rate without"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--only", choices=["pinned", "window", "bucket", "journal"])
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp())
    for name, fn in (
        ("pinned", scenario_pinned),
        ("window", scenario_window),
        ("bucket", scenario_bucket),
        ("journal", scenario_journal),
    ):
        if a.only in (None, name):
            fn(a.seconds, workdir)


if __name__ == "__main__":
    main()
