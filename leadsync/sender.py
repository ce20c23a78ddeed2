"""Sender stage: one row's request, its retries, and the reads that settle doubt (spec §4).

:class:`RowSender` sends one row with tenacity: 429/503/connect failures are always
retried; read timeouts, resets and 500/502/504 are *ambiguous* (the lead may have been
updated) and are retried only for payloads without ``questionnaire``; a questionnaire
payload is checked by reading the lead back, else it ends ``unknown``. A create
(``POST /leads``, spec §4b) is never re-sent on doubt: the person is looked up first
(:meth:`RowSender.find_created`), and only a lead provably absent is posted again. Every
GET (a lead, a lookup, the offices) goes through the one retried :meth:`RowSender.get`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import quote

from leadsync.client import LeadClient, refused_key, response_json, server_message
from leadsync.config import Config
from leadsync.creating import absent_why
from leadsync.errors import AbortError, LeadsyncError
from leadsync.model import Code, LeadRead, Lookup, Outcome, SendResult, http_code
from leadsync.quota import asked_wait, retry_after_seconds
from leadsync.throttle import Throttle


class _Retry(Exception):
    def __init__(self, reason: str, status: int | None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait


class _Done(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.outcome)
        self.result = result


def _backoff(config: Config) -> Any:
    """The run's one backoff policy: exponential from ``backoff_initial``, with jitter."""
    from tenacity import wait_exponential_jitter

    return wait_exponential_jitter(
        multiplier=config.backoff_initial, max=config.backoff_max, jitter=config.backoff_initial
    )


def _waits(config: Config) -> Callable[[Any], float]:
    """How long tenacity waits before a retry: the run's backoff, or what the server asked."""
    backoff = _backoff(config)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        base = float(backoff(state))
        if isinstance(exc, _Retry) and exc.wait is not None:
            # never sooner than the server asked; after a 429 that is the whole wait (the
            # throttle has slowed the run down already), after a 503 it comes on top
            return exc.wait if exc.status == 429 else max(base, exc.wait)
        return base

    return wait


def _server_wait(config: Config, response: Any) -> float | None:
    """The wait a 429 or 503 asks for: ``Retry-After``, else (a 429) the limit's reset."""
    if response.status_code == 429:
        wait = asked_wait(response.headers)
    else:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
    return None if wait is None else min(wait, config.backoff_max * 5)


_WHOLE_ID = re.compile(r"([0-9]{1,18})(?:\.0*)?", re.ASCII)
_AMBIGUOUS_STATUS = frozenset({500, 502, 504})
_SAFE_STATUS = frozenset({429, 503})


class RowSender:
    """Sends rows for one worker thread: its own client, the run's shared throttle."""

    def __init__(
        self,
        client: LeadClient,
        throttle: Throttle,
        config: Config,
        stop: threading.Event,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.throttle, self.config, self.stop = client, throttle, config, stop
        self.sleep = sleep
        self.retries = 0

    def send(self, lead_id: str | None, payload: Mapping[str, Any]) -> SendResult:
        """Send one update (``lead_id`` None: create the lead); every path ends in a
        :class:`SendResult`, never an exception."""
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_when_event_set,
        )

        appends = "questionnaire" in payload and not self.config.resend_ambiguous
        attempts = 0
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.config.max_attempts) | stop_when_event_set(self.stop),
                wait=_waits(self.config),
                retry=retry_if_exception_type(_Retry),
                reraise=True,
                sleep=self.sleep,
            ):
                with attempt:
                    if attempts:
                        self.retries += 1
                    attempts += 1
                    self._attempt(lead_id, payload, appends, attempts)
        except _Done as done:
            done.result.attempts = attempts
            return done.result
        except _Retry as exc:
            stopping = " (the run was stopping)" if self.stop.is_set() else ""
            return SendResult(
                Outcome.FAILED,
                exc.status,
                Code.GAVE_UP,
                f"gave up after {attempts} attempt(s): {exc.reason}{stopping}",
                attempts,
            )
        raise AssertionError("every attempt ends in _Done or _Retry")  # pragma: no cover

    def _attempt(
        self, lead_id: str | None, payload: Mapping[str, Any], appends: bool, number: int
    ) -> None:
        import requests

        from leadsync.deadline import PastDeadline

        ticket = self.throttle.acquire(self.stop)
        if ticket is None:
            if number == 1:
                raise _Done(
                    SendResult(
                        Outcome.NOT_ATTEMPTED,
                        code=Code.STOPPED,
                        message="the run stopped before this row was sent",
                    )
                )
            raise _Done(
                SendResult(
                    Outcome.FAILED,
                    None,
                    Code.STOPPED,
                    "the run stopped while this row was being retried; it was not applied",
                )
            )
        try:
            if lead_id is None:
                response = self.client.post_lead(payload)
            else:
                response = self.client.patch_lead(lead_id, payload)
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            self.throttle.release(ticket, None)
            raise _Retry(f"could not connect ({type(exc).__name__})", None) from None
        except requests.ConnectionError as exc:
            self.throttle.release(ticket, None)
            if _before_sending(exc):
                raise _Retry("could not connect", None) from None
            self._ambiguous(lead_id, payload, appends, "the connection broke after sending", None)
        except requests.Timeout as exc:
            self.throttle.release(ticket, None)
            message = (
                str(exc) if isinstance(exc, PastDeadline) else "no answer before the read timeout"
            )
            self._ambiguous(lead_id, payload, appends, message, None)
        self.throttle.release(ticket, response.status_code, response.headers)
        status = response.status_code
        if 200 <= status < 300:
            if lead_id is None:
                self._created(payload, response)
            raise _Done(SendResult(Outcome.UPDATED, status))
        if status in (401, 403):
            raise _Done(
                SendResult(
                    Outcome.FAILED,
                    status,
                    Code.AUTH,
                    server_message(response) or "the API key was refused",
                    abort=refused_key(status),
                )
            )
        if status in _SAFE_STATUS:
            raise _Retry(f"HTTP {status}", status, _server_wait(self.config, response))
        if status in _AMBIGUOUS_STATUS or status >= 500:
            self._ambiguous(lead_id, payload, appends, f"HTTP {status}", status)
        if 300 <= status < 400:
            raise _Done(
                SendResult(
                    Outcome.FAILED,
                    status,
                    Code.REDIRECT,
                    f"the API answered with a redirect (HTTP {status}) "
                    "that leadsync does not follow: check the base URL",
                )
            )
        body = response_json(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        field_errors = (
            {
                str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in errors.items()
            }
            if isinstance(errors, dict)
            else {}
        )
        raise _Done(
            SendResult(
                Outcome.REJECTED,
                status,
                http_code(status),
                server_message(response) or f"HTTP {status}",
                field_errors=field_errors,
            )
        )

    def _created(self, payload: Mapping[str, Any], response: Any) -> NoReturn:
        """A create was accepted: the new id from its answer (``id`` or ``data.id``); an
        answer without one is settled by looking the person up, never by posting again."""
        new_id = created_id(response_json(response))
        status = response.status_code
        if new_id is not None:
            raise _Done(SendResult(Outcome.CREATED, status, lead_id=new_id))
        found, _ = self.find_created(payload)
        if found is not None:
            message = "the answer carried no lead id; looking the person up found the new lead"
            raise _Done(
                SendResult(Outcome.CREATED, status, Code.FOUND_CREATED, message, lead_id=found)
            )
        raise _Done(
            SendResult(
                Outcome.UNKNOWN,
                status,
                Code.NO_ID_IN_ANSWER,
                f"the API accepted the create (HTTP {status}) but its answer carried no lead "
                "id, and looking the person up did not find it: check the leads before "
                "re-running (it is not posted again)",
            )
        )

    def _ambiguous_create(
        self, payload: Mapping[str, Any], reason: str, status: int | None
    ) -> NoReturn:
        found, absent = self.find_created(payload)
        if found is not None:
            raise _Done(
                SendResult(
                    Outcome.CREATED,
                    status,
                    Code.FOUND_CREATED,
                    f"{reason}; looking the person up found the new lead",
                    lead_id=found,
                )
            )
        if absent:
            raise _Retry(f"{reason}; looking the person up shows it was not created", status)
        raise _Done(
            SendResult(
                Outcome.UNKNOWN,
                status,
                Code.AMBIGUOUS_CREATE,
                f"{reason}: the lead may have been created, and looking the person up "
                f"could not tell ({absent_why(payload)}); it is not posted again, which "
                "could make a duplicate: check the leads, then re-run",
            )
        )

    def _ambiguous(
        self,
        lead_id: str | None,
        payload: Mapping[str, Any],
        appends: bool,
        reason: str,
        status: int | None,
    ) -> NoReturn:
        if lead_id is None:
            self._ambiguous_create(payload, reason, status)
        if not appends:
            raise _Retry(reason, status)  # re-sending the same values is harmless
        applied = self.check_applied(lead_id, payload)
        if applied is True:
            raise _Done(
                SendResult(
                    Outcome.UPDATED,
                    status,
                    Code.CONFIRMED,
                    f"{reason}; reading the lead back shows the update applied",
                )
            )
        if applied is False:
            raise _Retry(f"{reason}; the lead shows it was not applied", status)
        raise _Done(
            SendResult(
                Outcome.UNKNOWN,
                status,
                Code.AMBIGUOUS,
                f"{reason}: the update may have been applied, and its questionnaire answers "
                "would be appended twice if sent again; check the lead, or re-run with "
                "--resend-ambiguous",
            )
        )

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """A GET (it changes nothing), throttled like every request: 429, 5xx and
        connection failures are retried with the run's backoff. Returns the response, or
        None when the run stopped first; raises the last ``requests`` exception or
        :class:`_Retry` when every attempt failed."""
        import requests
        from tenacity import Retrying, stop_after_attempt, stop_when_event_set

        for attempt in Retrying(
            stop=stop_after_attempt(self.config.max_attempts) | stop_when_event_set(self.stop),
            wait=_waits(self.config),
            reraise=True,
            sleep=self.sleep,
        ):
            with attempt:
                ticket = self.throttle.acquire(self.stop)
                if ticket is None:
                    return None
                try:
                    response = self.client.request("GET", path, params=params)
                except requests.RequestException:
                    self.throttle.release(ticket, None)
                    raise
                self.throttle.release(ticket, response.status_code, response.headers)
                status = response.status_code
                if status == 429 or status >= 500:
                    wait = _server_wait(self.config, response) if status in _SAFE_STATUS else None
                    raise _Retry(f"HTTP {status}", status, wait)
        return response

    def offices(self) -> list[tuple[int | str, str]]:
        """The account's offices as (id, name); numeric ids as ints, whatever their JSON
        type. Raises :class:`AbortError` for a refused key, else a one-line
        :class:`LeadsyncError` when the list cannot be had."""
        import requests

        try:
            response = self.get("/offices")
        except requests.RequestException as exc:
            raise LeadsyncError(f"GET /offices failed: {type(exc).__name__}") from None
        except _Retry as exc:
            raise LeadsyncError(f"GET /offices failed: {exc.reason}") from None
        if response is None:
            raise LeadsyncError("GET /offices: the run stopped first")
        if response.status_code in (401, 403):
            raise AbortError(refused_key(response.status_code))
        if response.status_code != 200:
            raise LeadsyncError(
                f"GET /offices answered HTTP {response.status_code}: {server_message(response)}"
            )
        body = response_json(response)
        items = body.get("data", body) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise LeadsyncError("GET /offices did not return a list of offices")
        out: list[tuple[int | str, str]] = []
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                continue
            raw = str(item["id"]).strip()[:64]
            whole = _WHOLE_ID.fullmatch(raw)  # ASCII digits: "²".isdigit() is True
            oid: int | str = int(whole.group(1)) if whole else raw
            out.append((oid, str(item.get("name") or "")))
        return out

    def person_leads(self, by: str, value: str) -> tuple[list[dict[str, Any]] | None, str, bool]:
        """``GET /person/leads?<by>=<value>``: the leads found (None: no list came back),
        why not, and whether the API could not be asked at all. Raises
        :class:`AbortError` when the API refuses the key (the whole run stops)."""
        import requests

        try:
            response = self.get("/person/leads", {by: value})
        except requests.RequestException as exc:
            return None, f"looking the lead up failed: {type(exc).__name__}", True
        except _Retry as exc:
            return None, f"looking the lead up failed: {exc.reason}", True
        if response is None:
            return None, "the run stopped before the lead was looked up", True
        status = response.status_code
        if status in (401, 403):
            raise AbortError(refused_key(status))
        if status != 200:
            why = f"looking the lead up failed: HTTP {status} {server_message(response)}"
            return None, why.rstrip(), False
        body = response_json(response)
        items = body.get("data", body) if isinstance(body, dict) else body
        if not isinstance(items, list):  # a malformed answer: the API could not be asked
            return None, "looking the lead up failed: the answer was not a list", True
        return [i for i in items if isinstance(i, dict) and "id" in i], "", False

    def find_lead(self, by: str, value: str) -> Lookup:
        """The id of the one lead whose ``by`` (email/phone) is ``value``, or why not."""
        items, why, failed = self.person_leads(by, value)
        if items is None:
            return Lookup(None, why, failed, -1)
        ids = [str(i["id"])[:64] for i in items]
        if len(ids) == 1:
            return Lookup(ids[0], "", False, 1)
        if not ids:
            return Lookup(None, f"no lead has the {by} {value!r}", False, 0)
        why = f"{len(ids)} leads have the {by} {value!r} ({', '.join(ids[:5])}): "
        return Lookup(None, why + "add the lead id to the row", False, len(ids))

    def find_created(self, payload: Mapping[str, Any]) -> tuple[str | None, bool]:
        """After a create whose answer was lost: the id of the lead it made, found by the
        person's email and phone (``GET /person/leads``), and whether it is *provably*
        absent (every lookup answered, and no lead there is this row's). A lead counts
        as this row's when its names, type and postcodes, where the lead shows them,
        are the row's. Several such leads, or none and a lookup that failed: neither."""
        contacts = [(k, str(payload[k])) for k in ("email", "phone") if payload.get(k)]
        if not contacts:
            return None, False
        found: set[str] = set()
        sure = True  # every lookup answered, and every lead it found is surely not ours
        for by, value in contacts:
            items, _, _ = self.person_leads(by, value)
            if items is None:
                sure = False
                continue
            for item in items:
                verdict = same_person(item, payload)
                if verdict:
                    found.add(str(item["id"])[:64])
                elif verdict is None:
                    sure = False  # a lead that does not show its names: cannot rule it out
        if len(found) == 1:
            return found.pop(), False
        return None, sure and not found

    def read_lead(self, lead_id: str) -> LeadRead:
        """``GET /leads/<id>``, throttled and retried like every GET."""
        import requests

        try:
            response = self.get(f"/leads/{quote(lead_id, safe='')}")
        except requests.RequestException as exc:
            return LeadRead(None, None, type(exc).__name__)
        except _Retry as exc:
            return LeadRead(None, None, exc.reason)
        if response is None:
            return LeadRead(None, None, "the run stopped")
        body = response_json(response) if response.status_code == 200 else None
        lead = body.get("data", body) if isinstance(body, dict) else None
        return LeadRead(response.status_code, lead if isinstance(lead, dict) else None, "")

    def check_applied(self, lead_id: str, payload: Mapping[str, Any]) -> bool | None:
        """Read the lead back: True applied, False not applied, None cannot tell."""
        lead = self.read_lead(lead_id).lead
        if lead is None:
            return None
        try:
            return payload_applied(lead, payload)
        except (TypeError, ValueError, AttributeError):  # a lead of an undocumented shape
            return None


_IDENTITY = ("first_name", "last_name", "type", "postcode", "advert_postcode")


def same_person(lead: Mapping[str, Any], payload: Mapping[str, Any]) -> bool | None:
    """Whether ``lead`` (from a lookup) is the one ``payload`` created: its names equal
    the row's, and its type and postcodes too where it shows them. None: it does not show
    its names, so it can be neither claimed nor ruled out."""
    for key in _IDENTITY:
        want = payload.get(key)
        if want is None:
            continue
        if key not in lead or lead[key] is None:
            if key in ("first_name", "last_name"):
                return None
            continue
        have = lead[key]
        if not isinstance(have, str) or have.strip().casefold() != str(want).strip().casefold():
            return False
    return True


def created_id(body: Any) -> str | None:
    """The new lead's id in a create's answer: ``{"id": ...}`` or ``{"data": {"id": ...}}``
    (the docs do not say which); None for any other shape, or an id no URL can carry."""
    from leadsync.rules import check_lead_id

    if not isinstance(body, dict):
        return None
    inner = body.get("data")
    if isinstance(inner, list) and len(inner) == 1:
        inner = inner[0]  # {"data": [lead]}: a list of the one lead made
    for holder in (inner, body) if isinstance(inner, dict) else (body,):
        value = holder.get("id")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            continue
        text = str(value).strip()
        if check_lead_id(text) is None:
            return text
    return None


def payload_applied(lead: Mapping[str, Any], payload: Mapping[str, Any]) -> bool | None:
    """Does ``lead`` show ``payload`` applied? None when it cannot tell."""
    pairs = [tuple(p) for p in payload.get("questionnaire", [])]
    answers = lead.get("questionnaire") or []
    if not isinstance(answers, list):
        return None  # not the shape the API documents: cannot tell
    have = [_pair(item) for item in answers]
    if pairs and not any(p in have for p in pairs):
        return False  # none of the answers is there: safe to send again
    for key, value in payload.items():
        if key == "questionnaire":
            continue
        if key == "meta":
            meta = lead.get("meta") or {}
            if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in value.items()):
                return None
        elif key not in lead or not same_value(lead[key], value):
            return None
    if pairs and have[-len(pairs) :] != pairs:
        return None
    return True


def _pair(item: Any) -> tuple[Any, ...]:
    if isinstance(item, dict):
        return (item.get("question"), item.get("answer"))
    return tuple(item) if isinstance(item, (list, tuple)) else (item,)


def same_value(have: Any, want: Any) -> bool:
    """Whether a lead's ``have`` is the value ``want`` that was sent (a number as text,
    a date as a date-time, a flag as 0/1)."""
    if isinstance(want, bool) or isinstance(have, bool):
        return bool(have) == want if isinstance(have, (bool, int)) else False
    if isinstance(want, int):
        try:
            return int(str(have)) == want
        except ValueError:
            return False
    if isinstance(want, str) and isinstance(have, str) and len(want) == 10 and want[4] == "-":
        return have[:10] == want  # a date may come back as a date-time
    return bool(have == want)


def _before_sending(exc: Exception) -> bool:
    """True when a connection error happened before any byte of the request left."""
    import urllib3.exceptions as u3

    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (u3.NewConnectionError, u3.ConnectTimeoutError, ConnectionRefusedError)):
            return True
        if isinstance(e, u3.MaxRetryError):
            stack.append(e.reason)
        stack.extend(
            [e.__cause__, e.__context__, *[a for a in e.args if isinstance(a, BaseException)]]
        )
    return False
