"""Sender pieces: URL rules, Retry-After, payload bytes and read-back checks."""

from __future__ import annotations

import json

import pytest

from leadsync.client import check_base_url, payload_bytes, redact
from leadsync.errors import LeadsyncError
from leadsync.quota import retry_after_seconds
from leadsync.sender import payload_applied


@pytest.mark.parametrize(
    "url",
    [
        "https://api.lead.pro/api/v103/",
        "http://127.0.0.1:8808/api/v103",
        "http://localhost:1/x",
        "http://[::1]:9/api",
    ],
)
def test_allowed_base_urls(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://api.lead.pro/api/v103",
            "refusing to send the API key over plain http to api.lead.pro",
        ),
        ("http://10.0.0.5/api", "refusing to send the API key over plain http to 10.0.0.5"),
        ("ftp://x/y", "is not an http(s) URL"),
        ("api.lead.pro", "is not an http(s) URL"),
    ],
)
def test_refused_base_urls(url: str, message: str) -> None:
    with pytest.raises(LeadsyncError) as info:
        check_base_url(url)
    assert message in str(info.value)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now_epoch=1445412480.0) == 10.0


def test_payload_bytes_are_compact_ascii_json_and_refuse_nan() -> None:
    # pure ASCII: a server that assumes latin-1 for a body without a charset reads it right
    assert payload_bytes({"first_name": "Zoë 😀"}) == b'{"first_name":"Zo\\u00eb \\ud83d\\ude00"}'
    assert json.loads(payload_bytes({"first_name": "Zoë 😀"})) == {"first_name": "Zoë 😀"}
    with pytest.raises(ValueError):
        payload_bytes({"x": float("nan")})


def test_redact() -> None:
    assert redact("key abcd1234 leaked", "abcd1234") == "key [REDACTED] leaked"
    assert redact("nothing", None) == "nothing"


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ({"status": "New", "questionnaire": [["Q", "A"]]}, True),
        ({"status": "New", "questionnaire": [["Old", "x"], ["Q", "A"]]}, True),
        ({"status": "New", "questionnaire": [{"question": "Q", "answer": "A"}]}, True),
        ({"status": "Old", "questionnaire": []}, False),  # the answer is not there: not applied
        ({"status": "Old", "questionnaire": [["Q", "A"]]}, None),  # answer there, status not
        ({"status": "New", "questionnaire": [["Q", "A"], ["Later", "x"]]}, None),
        ({"questionnaire": [["Q", "A"]]}, None),  # the field is not shown: cannot tell
    ],
)
def test_payload_applied(lead: dict[str, object], expected: bool | None) -> None:
    assert payload_applied(lead, {"status": "New", "questionnaire": [["Q", "A"]]}) is expected


def test_payload_applied_compares_like_the_server_returns_values() -> None:
    lead = {
        "office_id": "1213",
        "gdpr_checkbox": 1,
        "next_action_date": "2025-07-12T00:00:00Z",
        "meta": {"a": "1", "b": "2"},
    }
    payload = {
        "office_id": 1213,
        "gdpr_checkbox": True,
        "next_action_date": "2025-07-12",
        "meta": {"a": "1"},
    }
    assert payload_applied(lead, payload) is True
    assert payload_applied({**lead, "meta": {"a": "9"}}, payload) is None
