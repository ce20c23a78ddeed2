"""Sending throughput against the sandbox with 100 ms latency (spec §9, issue 20):

    python benchmarks/throughput.py [--seconds 40] [--only NAME] [--burst 2]

Every limiter shape of spec §4, the adaptive default against each (steady state: from the
10th second), and a pinned run; target >= 0.92 of the limit with < 1% of requests 429
(pinned: >= 0.99):

  pinned    `--rate 20` on a 20 req/s token bucket
  bucket    token bucket 20/s, `Retry-After` (rounded up) and X-RateLimit-* on 429s only
  bare      token bucket 20/s, no headers, no `Retry-After`
  burst     token bucket 20/s with a burst of 20, `Retry-After` and headers on 429s
  laravel   fixed window 200 per 10 s, X-RateLimit-Limit/-Remaining, `Retry-After`
  epoch     fixed window, X-RateLimit-Reset as an epoch time (GitHub), no `Retry-After`
  seconds   fixed window, X-RateLimit-Reset in seconds, no `Retry-After`
  trio      fixed window, IETF RateLimit-Limit/-Remaining/-Reset
  ietf      fixed window, IETF structured RateLimit / RateLimit-Policy
  change    token bucket 20/s -> 5/s -> 20/s: seconds to settle after each change
            (target <= 10 s: the first 2-second stretch within 15% of the new limit)
  shared    two leadsync runs (two journals) on one key's 20/s bucket: together
            >= 0.9 of it, neither starved, < 2% 429s

Each is printed beside a naive sequential `requests` loop against the same server in the
same run (the baseline). The sandbox runs as its own process (`leadsync sandbox`);
leadsync runs as the real CLI. Then the journal's cost (zero-latency sandbox).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the journal part imports it
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


def write_leads(path: Path, n: int, start: int = 100000) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "first_name", "last_name", "status"])
        for i in range(n):
            w.writerow([start + i, f"First{i}", f"Last{i}", "Contacted"])


def start_leadsync(server: Server, src: Path, *flags: str) -> subprocess.Popen[str]:
    out = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "LEADSYNC_API_KEY": KEY,
        "LEADSYNC_BASE_URL": server.base,
        "LEADSYNC_JOURNAL": str(out / "journal.sqlite"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "leadsync", "sync", str(src), "--report-dir", str(out),
         "--json", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    """Wait up to ``seconds``, then stop the run gracefully (SIGTERM); its summary."""
    try:
        stdout, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: a graceful stop, reports written
        stdout, _ = proc.communicate()
    return dict(json.loads(stdout))


def run_leadsync(server: Server, src: Path, *flags: str, seconds: float) -> dict[str, Any]:
    return finish(start_leadsync(server, src, *flags), seconds)


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


def windows(log: list[dict[str, Any]], length: float) -> list[int]:
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


def steady(name: str, log: list[dict[str, Any]]) -> tuple[float, float, int, str]:
    """Accepted requests/s in steady state, the share answered 429, requests, a detail:
    for a window, the full windows after the first (the last is cut short by the stop)."""
    if "--window" not in SHAPES.get(name, ()):
        rate, limited, n = rate_of(log, 10.0)
        return rate, limited, n, ""
    full = windows(log, 10.0)[1:-1]
    _, limited, n = rate_of(log)
    used = ", ".join(f"{c / 200:.0%}" for c in full)
    return (sum(full) / len(full) / 10 if full else 0.0), limited, n, f" windows used {used};"


SHAPES: dict[str, tuple[str, ...]] = {
    "bucket": ("--rate-limit", "20", "--rate-headers-on", "429"),
    "bare": ("--rate-limit", "20", "--rate-headers", "none", "--no-retry-after"),
    "burst": ("--rate-limit", "20", "--burst", "20", "--rate-headers-on", "429"),
    "laravel": ("--rate-limit", "200", "--window", "10"),
    "epoch": (
        "--rate-limit", "200", "--window", "10", "--rate-headers", "x-ratelimit-epoch",
        "--no-retry-after",
    ),
    "seconds": (
        "--rate-limit", "200", "--window", "10", "--rate-headers", "x-ratelimit-seconds",
        "--no-retry-after",
    ),
    "trio": ("--rate-limit", "200", "--window", "10", "--rate-headers", "ietf-trio"),
    "ietf": ("--rate-limit", "200", "--window", "10", "--rate-headers", "ietf"),
}  # fmt: skip


def baseline(flags: tuple[str, ...], seconds: float) -> str:
    server = Server(*flags)
    try:
        rate, limited, n = rate_of(naive(server, seconds), 1.0)
    finally:
        server.stop()
    return f"{rate:6.2f} req/s = {rate / 20:.3f} of the limit, 429s {limited:.2%} of {n}"


def scenario_pinned(seconds: float, workdir: Path, burst: str) -> None:
    flags = ("--rate-limit", "20", "--burst", burst)
    src = workdir / "pinned.csv"
    write_leads(src, int(seconds * 20) + 50)
    server = Server(*flags)
    try:
        run_leadsync(server, src, "--rate", "20", seconds=seconds)
        rate, limited, n = rate_of(server.log(), 2.0)
    finally:
        server.stop()
    mark = "ok" if rate / 20 >= 0.99 and limited < 0.01 else "MISSED"
    print(
        f"{'pinned':8s} leadsync {rate:6.2f} req/s = {rate / 20:.3f} of the limit, "
        f"429s {limited:.2%} of {n} (target >= 0.99)  {mark}"
    )
    print(f"{'':8s} baseline {baseline(flags, min(seconds, 10))}")


def scenario_shape(name: str, seconds: float, workdir: Path, burst: str) -> None:
    flags = SHAPES[name]
    if "--burst" not in flags:
        flags = (*flags, "--burst", burst)
    src = workdir / f"{name}.csv"
    write_leads(src, int(seconds * 30) + 400)
    server = Server(*flags)
    try:
        run_leadsync(server, src, seconds=seconds)
        rate, limited, n, detail = steady(name, server.log())
    finally:
        server.stop()
    mark = "ok" if rate / 20 >= 0.92 and limited < 0.01 else "MISSED"
    print(
        f"{name:8s} leadsync {rate:6.2f} req/s = {rate / 20:.3f} of the limit,{detail} "
        f"429s {limited:.2%} of {n} (steady state, target >= 0.92, < 1%)  {mark}"
    )
    print(f"{'':8s} baseline {baseline(flags, min(seconds, 10))}")


def settle(log: list[dict[str, Any]], t_change: float, limit: float, until: float) -> float:
    """Seconds after ``t_change`` until a 2-second stretch accepts within 15% of ``limit``
    and every later stretch before ``until`` stays within it."""
    t = t_change
    settled: float | None = None
    while t + 2 <= until:
        rate, _, _ = rate_of([e for e in log if t <= e["t"] < t + 2])
        ok = abs(rate - limit) <= 0.15 * limit
        if ok and settled is None:
            settled = t - t_change
        elif not ok:
            settled = None
        t += 1.0
    return math.inf if settled is None else settled


def scenario_change(seconds: float, workdir: Path, burst: str) -> None:
    period = max(25.0, seconds / 2)
    flags = (
        "--rate-limit", "20", "--burst", burst, "--rate-headers-on", "429",
        "--rate-schedule", f"{period}:5,{2 * period}:20",
    )  # fmt: skip
    src = workdir / "change.csv"
    write_leads(src, int(period * 45) + 100)
    server = Server(*flags)
    try:
        run_leadsync(server, src, seconds=3 * period)
        log = server.log()
    finally:
        server.stop()
    t0 = log[0]["t"]
    down = settle(log, t0 + period, 5, t0 + 2 * period)
    up = settle(log, t0 + 2 * period, 20, t0 + 3 * period)
    mark = "ok" if max(down, up) <= 10 else "MISSED"
    print(
        f"{'change':8s} leadsync 20/s -> 5/s settled in {down:.0f} s, 5/s -> 20/s in {up:.0f} s "
        f"(target <= 10 s each way)  {mark}"
    )


PREFIXES = ("/api/v103/leads/10", "/api/v103/leads/15")  # each run's own lead ids


def scenario_shared(seconds: float, workdir: Path, burst: str) -> None:
    flags = ("--rate-limit", "20", "--burst", burst, "--rate-headers-on", "429")
    server = Server(*flags)
    outs = []
    try:
        procs = []
        for i in range(2):
            src = workdir / f"shared{i}.csv"
            write_leads(src, int(seconds * 20) + 50, start=(100000, 150000)[i])
            procs.append(start_leadsync(server, src))
        deadline = time.monotonic() + seconds
        for proc in procs:  # both stop at the same moment
            outs.append(finish(proc, max(0.1, deadline - time.monotonic())))
        log = server.log()
    finally:
        server.stop()
    rate, limited, n = rate_of(log, 10.0)
    each = [rate_of([e for e in log if e["path"].startswith(p)], 10.0)[0] for p in PREFIXES]
    mark = "ok" if rate / 20 >= 0.9 and limited < 0.02 and min(each) >= 4 else "MISSED"
    print(
        f"{'shared':8s} two runs {rate:6.2f} req/s = {rate / 20:.3f} of the limit "
        f"({each[0]:.1f} + {each[1]:.1f}), 429s {limited:.2%} of {n} "
        f"(target >= 0.9, < 2%, neither starved)  {mark}"
    )


def scenario_journal(seconds: float, workdir: Path) -> None:
    print("journal: the cost of writing the journal (fsync before and after each send)")
    import leadsync
    from leadsync.config import Config

    n = 1500
    src = workdir / "journal.csv"
    write_leads(src, n)
    figures: dict[str, list[float]] = {}
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
    ap.add_argument("--burst", default="2", help="the token buckets' burst (default 2)")
    names = ["pinned", *SHAPES, "change", "shared", "journal"]
    ap.add_argument("--only", choices=names, action="append")
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp())
    print(
        f"sandbox latency {LATENCY * 1000:.0f} ms; buckets' burst {a.burst}; {a.seconds:.0f} s a run"
    )
    for name in names:
        if a.only and name not in a.only:
            continue
        if name == "pinned":
            scenario_pinned(a.seconds, workdir, a.burst)
        elif name in SHAPES:
            scenario_shape(name, a.seconds, workdir, a.burst)
        elif name == "change":
            scenario_change(a.seconds, workdir, a.burst)
        elif name == "shared":
            scenario_shared(a.seconds, workdir, a.burst)
        else:
            scenario_journal(a.seconds, workdir)


if __name__ == "__main__":
    main()
