"""The throttle (issue 20): every rate-limit header form, the governor's state machine on a
simulated clock against every limiter shape, and the real client over real HTTP."""

from __future__ import annotations

import csv
import heapq
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.config import Config
from leadsync.quota import Quota, read_quota
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from leadsync.sandbox_limits import Limiter, Verdict, limit_headers, parse_schedule
from leadsync.throttle import Governor

EPOCH = 1_700_000_000.0

# -- every header form ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59"}, Quota(60, 59)),
        # GitHub: the reset as an epoch time; and in milliseconds; and in seconds from now
        (
            {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(EPOCH) + 42),
            },
            Quota(60, 0, 42.0),
        ),
        ({"X-RateLimit-Reset": str(int(EPOCH * 1000) + 1500)}, Quota(None, None, 1.5)),
        ({"X-RateLimit-Limit": "10", "X-RateLimit-Reset": "7"}, Quota(10, None, 7.0)),
        # the IETF drafts' trio, the limit with its policy
        (
            {
                "RateLimit-Limit": "100, 100;w=60",
                "RateLimit-Remaining": "3",
                "RateLimit-Reset": "9",
            },
            Quota(100, 3, 9.0, 60.0),
        ),
        # draft-07: a dictionary and a plain policy
        (
            {"RateLimit": "limit=100, remaining=50, reset=5", "RateLimit-Policy": "100;w=10"},
            Quota(100, 50, 5.0, 10.0),
        ),
        # draft-08 onwards: structured fields; the policy closest to its limit governs
        (
            {"RateLimit-Policy": '"default";q=100;w=10', "RateLimit": '"default";r=50;t=5'},
            Quota(100, 50, 5.0, 10.0),
        ),
        (
            {
                "RateLimit-Policy": '"burst";q=10;w=1, "daily";q=1000;w=86400',
                "RateLimit": '"burst";r=9;t=1, "daily";r=2;t=3600',
            },
            Quota(1000, 2, 300.0, 86400.0),  # an hour's wait is capped at MAX_WAIT
        ),
        (
            {"RateLimit-Policy": "default;l=100;w=60", "RateLimit": "default;r=1;t=30"},
            Quota(100, 1, 30.0, 60.0),
        ),
        ({"Content-Type": "application/json"}, None),
    ],
)
def test_every_header_form_reads_as_one_quota(
    headers: dict[str, str], expected: Quota | None
) -> None:
    assert read_quota(headers, now_epoch=EPOCH) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Limit": "inf", "X-RateLimit-Remaining": "nan"},
        {"X-RateLimit-Limit": "-5", "X-RateLimit-Remaining": "x" * 10_000},
        {"RateLimit": '"a";r=' + "9" * 400},
        {"RateLimit-Policy": ";;;,,,===", "RateLimit": ',;="\\'},
    ],
)
def test_broken_rate_headers_read_as_absent_never_as_an_error(headers: dict[str, str]) -> None:
    quota = read_quota(headers, now_epoch=EPOCH)
    assert quota is None or (quota.limit is None and quota.remaining is None)


def test_a_reset_far_away_is_capped() -> None:
    quota = read_quota({"X-RateLimit-Reset": str(int(EPOCH) + 10**8)}, now_epoch=EPOCH)
    assert quota is not None and quota.reset_in == 300.0


def test_sandbox_header_styles_read_back_as_they_were_meant() -> None:
    verdict = Verdict(False, 200, 0, 6.2)
    for style, window in (
        ("x-ratelimit-epoch", 10.0),
        ("x-ratelimit-seconds", 10.0),
        ("ietf-trio", 10.0),
        ("ietf", 10.0),
    ):
        quota = read_quota(limit_headers(verdict, style, window, False, EPOCH), now_epoch=EPOCH)
        assert quota is not None, style
        assert (quota.limit, quota.remaining) == (200, 0), style
        assert quota.reset_in == 7.0, style  # rounded up to whole seconds, as servers send
    assert limit_headers(verdict, "none", None, True, EPOCH) == {"Retry-After": "7"}


def test_rate_schedule_and_its_errors() -> None:
    assert parse_schedule("30:5, 60:20") == ((30.0, 5.0), (60.0, 20.0))
    for bad in ("30", "x:5", "10:0", "-1:5", "nan:5"):
        with pytest.raises(ValueError, match="is not SECONDS:LIMIT"):
            parse_schedule(bad)


def test_scheduled_bucket_changes_its_limit() -> None:
    now = [0.0]
    limiter = Limiter(10, burst=1, schedule=((5.0, 2.0),), clock=lambda: now[0])
    allowed = 0
    while now[0] < 10:
        allowed += limiter.take().allowed
        now[0] += 0.01
    assert 55 <= allowed <= 62  # 5 s at 10/s, then 5 s at 2/s


# -- the governor on a simulated clock ----------------------------------------------------


class SimBucket:
    def __init__(self, rate: float, burst: int, headers_on_429: bool = True) -> None:
        self.limiter = Limiter(rate, burst, clock=lambda: self.now)
        self.now = 0.0
        self.headers_on_429 = headers_on_429

    def answer(self, now: float) -> tuple[int, dict[str, str]]:
        self.now = now
        verdict = self.limiter.take()
        if verdict.allowed:
            return 200, {}
        style = "x-ratelimit" if self.headers_on_429 else "none"
        return 429, limit_headers(verdict, style, None, self.headers_on_429, EPOCH + now)


class SimWindow:
    def __init__(self, limit: int, length: float, style: str, retry_after: bool) -> None:
        self.limiter = Limiter(limit, window=length, clock=lambda: self.now)
        self.now, self.style, self.length, self.retry_after = 0.0, style, length, retry_after

    def answer(self, now: float) -> tuple[int, dict[str, str]]:
        self.now = now
        verdict = self.limiter.take()
        headers = limit_headers(verdict, self.style, self.length, self.retry_after, EPOCH + now)
        return (200 if verdict.allowed else 429), headers


Log = list[tuple[float, int, int]]  # (arrival at the server, status, client)


def simulate(
    server: SimBucket | SimWindow,
    seconds: float,
    clients: int = 1,
    latency: float = 0.1,
    config: Config | None = None,
    schedule: Callable[[float], None] | None = None,
) -> tuple[Log, list[Governor]]:
    """Workers of ``clients`` runs (each its own governor) sending for ``seconds`` simulated
    seconds; a 429's request is retried after its Retry-After (else a backoff)."""
    config = config or Config()
    governors = [Governor(config, 0.0) for _ in range(clients)]
    events: list[tuple[float, int, str, tuple[Any, ...]]] = []
    seq = 0

    def push(t: float, kind: str, *args: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, args))

    for c in range(clients):
        for w in range(config.concurrency):
            push(0.0, "try", c, w, 0)
    log: Log = []
    while events:
        t, _, kind, args = heapq.heappop(events)
        if t > seconds:
            break
        if kind == "try":
            c, w, attempt = args
            wait, probe = governors[c].wait_needed(t)
            if wait > 0:
                push(t + min(wait, 0.25), "try", c, w, attempt)
            else:
                push(t + latency / 2, "arrive", c, w, attempt, governors[c].send(t, probe))
        elif kind == "arrive":
            c, w, attempt, ticket = args
            status, headers = server.answer(t)
            log.append((t, status, c))
            push(t + latency / 2, "answer", c, w, attempt, ticket, status, headers)
        else:
            c, w, attempt, ticket, status, headers = args
            governors[c].answered(t, ticket, status, headers, now_epoch=EPOCH + t)
            if status == 429:
                after = headers.get("Retry-After")
                push(t + (float(after) if after else 0.5 * 2**attempt), "try", c, w, attempt + 1)
            else:
                push(t, "try", c, w, 0)
    return log, governors


def accepted(log: Log, t0: float, t1: float, client: int | None = None) -> tuple[float, float]:
    """Accepted requests/s over [t0, t1) and the share answered 429."""
    entries = [e for e in log if t0 <= e[0] < t1 and client in (None, e[2])]
    ok = sum(1 for e in entries if e[1] != 429)
    return ok / (t1 - t0), (len(entries) - ok) / max(1, len(entries))


@pytest.mark.parametrize("burst", [2, 5, 20])
@pytest.mark.parametrize("headers", [True, False])
def test_a_token_bucket_is_used_to_the_full_with_few_429s(burst: int, headers: bool) -> None:
    log, _ = simulate(SimBucket(20, burst, headers_on_429=headers), 70)
    rate, limited = accepted(log, 10, 70)
    assert rate >= 0.92 * 20
    assert limited < 0.01


@pytest.mark.parametrize(
    ("style", "retry_after"),
    [
        ("x-ratelimit", True),  # Laravel
        ("x-ratelimit-epoch", False),  # GitHub
        ("x-ratelimit-seconds", False),
        ("ietf-trio", True),
        ("ietf", False),
    ],
)
def test_a_fixed_window_is_spent_to_the_last_request_and_waited_out(
    style: str, retry_after: bool
) -> None:
    log, governors = simulate(SimWindow(200, 10.0, style, retry_after), 60)
    rate, _ = accepted(log, 10, 60)
    assert rate >= 0.97 * 20
    assert sum(1 for e in log if e[1] == 429) <= 1  # at most one, to learn the reset
    assert (
        governors[0].findings() == {"kind": "window", "limit": 200, "window_s": 10.0}
        or (governors[0].findings() or {}).get("kind") == "window"
    )


def test_a_limit_that_falls_and_rises_is_found_again_within_ten_seconds() -> None:
    server = SimBucket(20, 2)
    server.limiter.schedule = ((30.0, 5.0), (60.0, 20.0))
    log, _ = simulate(server, 90)
    down, _ = accepted(log, 40, 60)  # from 10 s after the fall
    up, _ = accepted(log, 70, 90)  # from 10 s after the rise
    assert 0.85 * 5 <= down <= 1.1 * 5
    assert up >= 0.9 * 20


def test_two_runs_sharing_one_key_share_it_fairly_and_fully() -> None:
    log, _ = simulate(SimBucket(20, 2), 70, clients=2)
    total, limited = accepted(log, 10, 70)
    each = [accepted(log, 10, 70, c)[0] for c in (0, 1)]
    assert total >= 0.9 * 20
    assert limited < 0.02
    assert min(each) >= 0.25 * 20  # neither starved


def test_a_short_retry_after_does_not_stop_every_worker() -> None:
    g = Governor(Config(start_rate=20), 0.0)
    tickets = [g.send(0.0) for _ in range(3)]
    g.answered(0.1, tickets[0], 429, {"Retry-After": "1"}, now_epoch=EPOCH)
    wait, _ = g.wait_needed(0.1)
    assert wait < 0.5  # the next slot, not the second the server asked of that request
    assert g.stats.paused == 0 and g.rate < tickets[0].rate  # slowed down instead


def test_a_long_retry_after_or_a_run_of_429s_stops_every_worker() -> None:
    g = Governor(Config(), 0.0)
    first = g.send(0.0)
    g.answered(0.1, first, 429, {"Retry-After": "5"}, now_epoch=EPOCH)
    assert g.wait_needed(0.2)[0] == pytest.approx(4.9)
    # a window without a count: three refusals in a row, each of a request sent after
    # the first 429 was heard, and the key is spent until that 429's wait is over
    g = Governor(Config(), 0.0)
    g.answered(0.1, g.send(0.0), 429, {"Retry-After": "1"}, now_epoch=EPOCH)
    for i in range(3):
        t = 0.2 + i * 0.05
        g.answered(t + 0.01, g.send(t), 429, {"Retry-After": "1"}, now_epoch=EPOCH)
    assert g.stats.paused == 1
    assert g.wait_needed(0.4)[0] > 0.5


def test_a_pinned_rate_never_moves() -> None:
    g = Governor(Config(rate=7), 0.0)
    ticket = g.send(0.0)
    g.answered(0.1, ticket, 429, {"Retry-After": "1"}, now_epoch=EPOCH)
    g.answered(0.2, g.send(0.2), 200, {}, now_epoch=EPOCH)
    assert g.rate == 7 and g.findings() is None


def test_slow_start_does_not_grow_a_rate_that_is_not_holding_anything_back() -> None:
    g = Governor(Config(start_rate=4), 0.0)
    for i in range(20):  # one request every 2 s: far below the rate, never waited for
        t = 2.0 * i
        assert g.wait_needed(t)[0] == 0
        g.answered(t + 0.1, g.send(t), 200, {}, now_epoch=EPOCH)
    assert g.rate == 4


# -- real HTTP ------------------------------------------------------------------------


def _sync(
    tmp_path: Path, sandbox: SandboxConfig, rows: int, start_rate: float
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Sync ``rows`` leads against a sandbox: the run's summary, the sandbox's stats and
    its request log."""
    src = tmp_path / "in.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "first_name", "last_name"])
        w.writerows([1000 + i, "A", "B"] for i in range(rows))
    with Sandbox(sandbox) as sb:
        config = Config(base_url=sb.base_url, start_rate=start_rate)
        result = leadsync.sync(src, config, tmp_path / "o", api_key=DEFAULT_KEY)
        summary, stats, log = result.summary, sb.stats(), sb.requests_log()
    assert summary["outcomes"]["updated"] == rows
    return summary, stats, log


def test_adaptive_throttle_learns_a_window_and_stops_probing(tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=15, window=1.0, latency=0.02)
    _, stats, _ = _sync(tmp_path, sandbox, 60, start_rate=20)
    assert stats["rate_limited"] <= 1  # one 429 to learn the reset, then none


def test_adaptive_throttle_does_not_starve_on_a_refilling_bucket(tmp_path: Path) -> None:
    # a token bucket that also sends X-RateLimit-Remaining (0 or 1 most of the time):
    # budgeting like a window would serialise the requests; leadsync must notice
    _, stats, _ = _sync(tmp_path, SandboxConfig(rate_limit=40, burst=2, latency=0.05), 80, 40)
    assert stats["max_concurrent"] >= 2


@pytest.mark.parametrize(
    ("style", "retry_after"),
    [
        ("x-ratelimit-epoch", False),
        ("x-ratelimit-seconds", False),
        ("ietf-trio", True),
        ("ietf", False),
    ],
)
def test_each_header_style_over_http_spends_windows_without_429_storms(
    tmp_path: Path, style: str, retry_after: bool
) -> None:
    sandbox = SandboxConfig(
        rate_limit=15, window=1.0, rate_headers=style, retry_after=retry_after, latency=0.02
    )
    summary, stats, _ = _sync(tmp_path, sandbox, 50, start_rate=20)
    assert stats["rate_limited"] <= 2  # learning the window, never a storm
    assert summary["sending"]["server_limit"]["kind"] == "window"


def test_a_buckets_retry_after_holds_back_its_request_not_the_run(tmp_path: Path) -> None:
    # a 20/s bucket that says Retry-After: 1 (rounded up) and its count on 429s only
    sandbox = SandboxConfig(rate_limit=20, burst=1, rate_headers_on="429", latency=0.02)
    _, _, log = _sync(tmp_path, sandbox, 120, start_rate=40)
    refused = [(e["t"], e["path"]) for e in log if e["status"] == 429]
    assert refused, "the run must have met the limit for this test to mean anything"
    for t, path in refused:
        later = [e["t"] for e in log if e["path"] == path and e["t"] > t]
        assert later and later[0] - t >= 0.95  # its own retry waited the second asked
    # ... while the others went on: requests let through within that second
    assert all(any(t < e["t"] < t + 0.9 and e["status"] != 429 for e in log) for t, _ in refused)


def test_a_limit_change_mid_run_is_followed_over_http(tmp_path: Path) -> None:
    sandbox = SandboxConfig(
        rate_limit=30, burst=2, rate_schedule=((3.0, 8.0),), rate_headers="none", latency=0.02
    )
    summary, _, log = _sync(tmp_path, sandbox, 200, start_rate=30)
    t0 = log[0]["t"]
    late = [e for e in log if e["t"] >= t0 + 9]  # from 6 s after the fall
    ok = sum(1 for e in late if e["status"] != 429)
    span = late[-1]["t"] - late[0]["t"]
    assert span > 3 and ok / span <= 8 * 1.25  # held at the new limit ...
    assert sum(1 for e in late if e["status"] == 429) / len(late) < 0.1  # ... not fought
    assert math.isfinite(summary["sending"]["server_limit"]["requests_per_s"])
