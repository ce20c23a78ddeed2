"""Can the sandbox take 200 requests/s from a concurrent client without errors of its own?

    python benchmarks/sandbox_load.py [--seconds 10] [--threads 8] [--target 200]

Starts `leadsync sandbox` as its own process on a free port, then sends valid PATCHes from
`--threads` keep-alive sessions, paced to `--target` requests/s in total, for `--seconds`.
Prints achieved rate, status counts, client errors and latency percentiles, next to the
same load against a bare `http.server` that answers `{}` (the baseline, same run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

BODY = json.dumps(
    {
        "first_name": "Ann",
        "last_name": "Lee",
        "status": "Contacted",
        "questionnaire": [["Budget?", "£300k"]],
    }
)


def load(base: str, seconds: float, threads: int, target: float) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    interval = threads / target  # each thread's pace

    def worker(k: int) -> None:
        s = requests.Session()
        n = 0
        while True:
            due = start + k * interval / threads + n * interval
            now = time.monotonic()
            if due - start >= seconds:
                return
            if due > now:
                time.sleep(due - now)
            lead = 1000 + (k * 997 + n) % 9000
            t0 = time.monotonic()
            try:
                r = s.patch(
                    f"{base}/leads/{lead}",
                    data=BODY,
                    timeout=10,
                    headers={"X-API-KEY": "sandbox-key", "Content-Type": "application/json"},
                )
                key = str(r.status_code)
            except requests.RequestException as exc:
                key = type(exc).__name__
            with lock:
                codes[key] += 1
                latencies.append(time.monotonic() - t0)
            n += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "rate": sum(codes.values()) / elapsed,
        "codes": dict(codes),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


class _Bare(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--target", type=float, default=200)
    a = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadsync", "sandbox", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        base = proc.stderr.readline().split(" listening on ")[1].split()[0]
        sandbox = load(base, a.seconds, a.threads, a.target)
        stats = requests.get(base.replace("/api/v103", "/_sandbox/stats"), timeout=10).json()
    finally:
        proc.terminate()
        proc.wait()
    bare_server = ThreadingHTTPServer(("127.0.0.1", 0), _Bare)
    bare_server.daemon_threads = True
    threading.Thread(target=bare_server.serve_forever, daemon=True).start()
    bare = load(
        f"http://127.0.0.1:{bare_server.server_address[1]}/api/v103", a.seconds, a.threads, a.target
    )
    bare_server.shutdown()
    print(f"target {a.target:.0f} req/s, {a.threads} keep-alive sessions, {a.seconds:.0f} s")
    for name, r in (("sandbox", sandbox), ("bare http.server", bare)):
        print(
            f"  {name:<17} {r['rate']:7.1f} req/s  ratio {r['rate'] / a.target:.3f}  "
            f"p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:5.1f} ms  {r['codes']}"
        )
    print(
        f"  sandbox applied {stats['applied_requests']} updates, by status {stats['by_status']}, "
        f"max concurrent {stats['max_concurrent']}"
    )


if __name__ == "__main__":
    main()
