"""The sandbox itself, over real HTTP on loopback: rules, rate limits, faults, stats."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig, parse_lead_ids
from tests.conftest import sandbox_process

KEY = {"X-API-KEY": DEFAULT_KEY}
NAMES = {"first_name": "Ann", "last_name": "Lee"}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(leads=["1", "2", "3", "ABC-9"])) as sb:
        yield sb


def start(**kw: Any) -> Sandbox:
    kw.setdefault("leads", [str(i) for i in range(1, 51)])
    return Sandbox(SandboxConfig(**kw)).start()


def patch(
    sb: Sandbox,
    lead: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    session: Any = requests,
) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    response: requests.Response = session.patch(
        f"{sb.base_url}/leads/{lead}",
        data=data,
        timeout=timeout,
        headers={"Content-Type": "application/json", **(KEY if headers is None else headers)},
    )
    return response


def test_binds_loopback_on_a_free_port(sandbox: Sandbox) -> None:
    assert sandbox.config.host == "127.0.0.1" and sandbox.port > 0
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}/api/v103"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-API-KEY": "wrong"}, 401), ({"X-API-KEY": "revoked-key"}, 403)],
)
def test_auth(sandbox: Sandbox, headers: dict[str, str], status: int) -> None:
    r = patch(sandbox, "1", NAMES, headers=headers)
    assert r.status_code == status
    assert "message" in r.json()
    assert sandbox.stats()["applied"] == {}


def test_patch_applies_replaces_appends_and_merges(sandbox: Sandbox) -> None:
    first = {
        **NAMES,
        "status": "Contacted",
        "questionnaire": [["Budget?", "£300k"]],
        "meta": {"source": "crm"},
        "office_id": 1213,
        "gdpr_checkbox": True,
    }
    r = patch(sandbox, "1", first)
    assert r.status_code == 200
    assert r.json()["data"]["status"] == "Contacted"
    second = {
        **NAMES,
        "status": "Instructed",
        "questionnaire": [["Move?", "ASAP"]],
        "meta": {"agent": "Tom"},
    }
    assert patch(sandbox, "1", second).status_code == 200
    lead = requests.get(f"{sandbox.base_url}/leads/1", headers=KEY, timeout=5).json()["data"]
    assert lead["status"] == "Instructed"
    assert lead["questionnaire"] == [["Budget?", "£300k"], ["Move?", "ASAP"]]
    assert lead["meta"] == {"source": "crm", "agent": "Tom"}
    stats = sandbox.stats()
    assert stats["applied"]["1"]["count"] == 2
    assert stats["applied"]["1"]["questionnaire_len"] == 2
    assert stats["duplicate_questionnaire_pairs"] == 0
    assert patch(sandbox, "1", {**NAMES, "questionnaire": [["Move?", "ASAP"]]}).status_code == 200
    assert sandbox.stats()["duplicate_questionnaire_pairs"] == 1  # the record catches doubles


def test_lead_ids_are_percent_decoded_and_unknown_ones_404(sandbox: Sandbox) -> None:
    assert patch(sandbox, "ABC%2D9", NAMES).status_code == 200
    r = patch(sandbox, "999", NAMES)
    assert r.status_code == 404 and r.json() == {"message": "Lead 999 not found."}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NAMES, "address": ""}, "address"),
        ({**NAMES, "status": "   "}, "status"),
        ({**NAMES, "postcode": None}, "postcode"),
        ({**NAMES, "office_id": 1213.0}, "office_id"),
        ({**NAMES, "office_id": "1213"}, "office_id"),
        ({**NAMES, "office_id": 4242}, "office_id"),
        ({**NAMES, "gdpr_checkbox": "yes"}, "gdpr_checkbox"),
        ({**NAMES, "next_action_date": "12/07/2025"}, "next_action_date"),
        ({**NAMES, "colour": "red"}, "colour"),
        ({**NAMES, "first_name": "x" * 51}, "first_name"),
        ({**NAMES, "advert_postcode": "x" * 256}, "advert_postcode"),
        ({**NAMES, "questionnaire": [["q", "é" * 400]]}, "questionnaire"),
        ({**NAMES, "questionnaire": [["q"]]}, "questionnaire"),
        ({**NAMES, "meta": {"k": "/" * 600}}, "meta"),
        ({**NAMES, "meta": {"k": 1}}, "meta"),
        ({"first_name": "Ann"}, "last_name"),
    ],
)
def test_invalid_data_gets_422_with_errors_per_field(
    sandbox: Sandbox, body: dict[str, Any], field: str
) -> None:
    r = patch(sandbox, "2", body)
    assert r.status_code == 422
    doc = r.json()
    assert doc["message"] == "The given data was invalid."
    assert list(doc["errors"]) == [field]
    assert all(isinstance(m, str) for m in doc["errors"][field])
    assert sandbox.stats()["applied"] == {}


def test_edges_that_are_valid(sandbox: Sandbox) -> None:
    body = {
        **NAMES,
        "first_name": "é" * 50,
        "address": "x" * 255,
        "questionnaire": [["q", "é" * 330]],
        "next_action_date": "2025-07-12T13:30:00Z",
    }
    assert patch(sandbox, "2", body).status_code == 200


def test_malformed_json_is_400(sandbox: Sandbox) -> None:
    assert patch(sandbox, "2", '{"first_name": "Ann",}').status_code == 400
    assert patch(sandbox, "2", "[1, 2]").status_code == 400


def test_partial_updates_switch() -> None:
    with Sandbox(SandboxConfig(leads=["1"], require_names=False)) as sb:
        assert patch(sb, "1", {"status": "Lost"}).status_code == 200


def test_offices_ids_come_as_strings_and_numbers(sandbox: Sandbox) -> None:
    data = requests.get(f"{sandbox.base_url}/offices", headers=KEY, timeout=5).json()["data"]
    assert {type(o["id"]) for o in data} == {str, int}
    assert sorted(int(o["id"]) for o in data) == [1213, 1214, 1215, 1216]


def test_person_leads_by_email_or_phone(sandbox: Sandbox) -> None:
    url = f"{sandbox.base_url}/person/leads"
    by_email = requests.get(url, params={"email": "LEAD2@example.test"}, headers=KEY, timeout=5)
    assert [lead["id"] for lead in by_email.json()["data"]] == ["2"]
    by_phone = requests.get(url, params={"phone": "07700 000003"}, headers=KEY, timeout=5)
    assert [lead["id"] for lead in by_phone.json()["data"]] == ["3"]
    assert requests.get(url, headers=KEY, timeout=5).status_code == 422


def test_token_bucket_429_with_headers() -> None:
    sb = start(rate_limit=2, burst=2)
    try:
        with requests.Session() as s:
            codes = [patch(sb, "1", NAMES, session=s) for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 429, 429]
        limited = codes[2]
        assert limited.headers["Retry-After"] == "1"
        assert limited.headers["X-RateLimit-Limit"] == "2"
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert codes[0].headers["X-RateLimit-Remaining"] == "1"
        assert sb.stats()["rate_limited"] == 2
    finally:
        sb.stop()


def test_header_less_bucket() -> None:
    sb = start(rate_limit=1, burst=1, rate_headers="none", retry_after=False)
    try:
        rs = [patch(sb, "1", NAMES) for _ in range(2)]
        assert [r.status_code for r in rs] == [200, 429]
        assert not any(h.startswith("X-RateLimit") or h == "Retry-After" for h in rs[1].headers)
    finally:
        sb.stop()


def test_fixed_window_counts_down_and_resets() -> None:
    sb = start(rate_limit=3, window=0.5)
    try:
        with requests.Session() as s:
            rs = [patch(sb, "1", NAMES, session=s) for _ in range(4)]
            assert [r.status_code for r in rs] == [200, 200, 200, 429]
            assert [r.headers["X-RateLimit-Remaining"] for r in rs] == ["2", "1", "0", "0"]
            assert rs[3].headers["Retry-After"] == "1"
            deadline = time.monotonic() + 5
            while patch(sb, "1", NAMES, session=s).status_code == 429:  # the window ends
                assert time.monotonic() < deadline
    finally:
        sb.stop()


def test_503_is_before_applying() -> None:
    sb = start(fail_503=1.0)
    try:
        r = patch(sb, "1", NAMES)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert sb.stats()["applied"] == {} and sb.stats()["faults"] == {"503": 1}
    finally:
        sb.stop()


def test_500_is_after_applying() -> None:
    sb = start(fail_500_after=1.0)
    try:
        assert patch(sb, "1", {**NAMES, "questionnaire": [["q", "a"]]}).status_code == 500
        assert sb.stats()["applied"]["1"]["questionnaire_len"] == 1
    finally:
        sb.stop()


def test_dropped_connection_after_applying() -> None:
    sb = start(drop_after=1.0)
    try:
        with pytest.raises(requests.ConnectionError):
            patch(sb, "1", NAMES)
        assert sb.stats()["applied"]["1"]["count"] == 1
        assert sb.requests_log()[0]["status"] == "drop_after"
    finally:
        sb.stop()


def test_stall_after_applying_times_the_client_out() -> None:
    sb = start(stall_after=1.0, stall_seconds=3)
    try:
        with pytest.raises(requests.ReadTimeout):
            patch(sb, "1", NAMES, timeout=0.3)
        assert sb.stats()["applied"]["1"]["count"] == 1
    finally:
        sb.stop()


def test_faults_are_seeded() -> None:
    def sequence(seed: int) -> list[int | str]:
        sb = start(fail_503=0.3, fail_500_after=0.2, seed=seed)
        try:
            with requests.Session() as s:
                return [patch(sb, str(i), NAMES, session=s).status_code for i in range(1, 31)]
        finally:
            sb.stop()

    a, b = sequence(7), sequence(7)
    assert a == b
    assert {200, 500, 503} <= set(a)
    assert sequence(8) != a


def test_stats_count_concurrency_and_reset() -> None:
    sb = start(latency=0.2)
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: patch(sb, str(i), NAMES).status_code, range(1, 9)))
        assert codes == [200] * 8
        stats = sb.stats()
        assert stats["requests"] == 8 and stats["applied_requests"] == 8
        assert stats["max_concurrent"] >= 4  # 8 requests of 200 ms overlapped
        over_http = requests.get(f"{sb.url}/_sandbox/stats", timeout=5).json()
        assert over_http["applied_requests"] == 8
        log = requests.get(f"{sb.url}/_sandbox/log", timeout=5).json()
        assert len(log) == 8 and log[0]["body"] == NAMES
        assert requests.post(f"{sb.url}/_sandbox/reset", timeout=5).json() == {"reset": True}
        assert sb.stats()["requests"] == 0
        lead = sb.lead("1")
        assert lead is not None and lead["first_name"] == "Lead" and lead["questionnaire"] == []
    finally:
        sb.stop()


def test_parse_lead_ids() -> None:
    assert parse_lead_ids("1-3, ABC ,10-11") == ["1", "2", "3", "ABC", "10", "11"]


def test_cli_sandbox_serves_until_stopped() -> None:
    env = {**os.environ, "LEADSYNC_API_KEY": "secret-from-env"}
    with sandbox_process("--leads", "1-5", "--rate-limit", "100", env=env) as (proc, first, base):
        assert "(loopback only)" in first
        assert proc.stderr is not None
        second = proc.stderr.readline()
        assert "secret-from-env" not in second and "leads: 5" in second
        r = requests.patch(
            f"{base}/leads/3", json=NAMES, headers={"X-API-KEY": "secret-from-env"}, timeout=5
        )
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "100"


def test_cli_fail_rate_injects_every_kind_of_fault() -> None:
    with sandbox_process("--leads", "1-40", "--fail-rate", "1", "--seed", "3") as (_, _, base):
        outcomes = set()
        for i in range(1, 31):
            try:
                r = requests.patch(f"{base}/leads/{i}", json=NAMES, headers=KEY, timeout=5)
                outcomes.add(r.status_code)
            except requests.ConnectionError:
                outcomes.add("dropped")
        assert outcomes == {503, 500, "dropped"}
        stats = requests.get(base.replace("/api/v103", "/_sandbox/stats"), timeout=5).json()
        assert set(stats["faults"]) == {"503", "500_after", "drop_after"}


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/x-www-form-urlencoded", 415),
        ("text/plain", 415),
    ],
)
def test_patch_bodies_must_be_declared_json(
    sandbox: Sandbox, content_type: str, status: int
) -> None:
    response = patch(sandbox, "1", NAMES, headers={**KEY, "Content-Type": content_type})
    assert response.status_code == status
    if status == 415:
        assert "application/json" in response.json()["message"]
        assert sandbox.stats()["applied"] == {}
