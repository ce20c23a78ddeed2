"""Sender stage: the HTTP client, the shared throttle and the retry rules (spec §4).

- :class:`LeadClient` — one ``requests.Session`` per worker (keep-alive), timeouts on
  every request, redirects never followed (the key must not travel), ids percent-encoded.
- :class:`Throttle` — one for the whole run, shared by every worker: pinned (``--rate``)
  or adaptive (start low, follow ``X-RateLimit-*``, halve on 429, honour ``Retry-After``,
  creep up while all is well, never above ``--max-rate``).
- :class:`RowSender` — sends one row with tenacity: 429/503/connect failures are always
  retried; read timeouts, resets and 500/502/504 are *ambiguous* (the lead may have been
  updated) and are retried only for payloads without ``questionnaire``; a questionnaire
  payload is checked by reading the lead back, else it ends ``unknown``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote, urlsplit

from leadsync import __version__
from leadsync.config import Config
from leadsync.errors import AbortError, LeadsyncError

Clock = Callable[[], float]


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; HTTPS required except on loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise LeadsyncError(f"base URL {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _loopback(host):
        raise LeadsyncError(f"refusing to send the API key over plain http to {host}: use https://")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "[REDACTED]")
    return text


def payload_bytes(payload: Mapping[str, Any]) -> bytes:
    """The request body: compact JSON, non-ASCII as ``\\uXXXX`` escapes (pure ASCII, so no
    server can decode it wrongly, whatever charset it assumes); NaN/Infinity raise instead
    of going out."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


def refused_key(status: int) -> str:
    """Why a run stops when the API answers 401/403."""
    return f"the API refused the key (HTTP {status}): check LEADSYNC_API_KEY"


class LeadClient:
    """A keep-alive HTTP client for the Lead API (one per worker thread)."""

    def __init__(self, base_url: str, api_key: str, config: Config) -> None:
        import requests

        self.base_url = check_base_url(base_url)
        self.timeout = (config.connect_timeout, config.read_timeout)
        self.session = requests.Session()
        # proxies (HTTPS_PROXY, NO_PROXY) and REQUESTS_CA_BUNDLE from the environment are
        # honoured, as operators behind a corporate proxy expect; TLS is always verified
        if config.ca_bundle:
            self.session.verify = config.ca_bundle
        if _loopback(urlsplit(self.base_url).hostname or ""):
            self.session.trust_env = False  # never send loopback traffic to a proxy
        self.session.headers.update(
            {
                "X-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"leadsync/{__version__}",
            }
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        # no charset parameter: RFC 8259 defines none for JSON, and a strict server may
        # compare the media type exactly
        headers = {"Content-Type": "application/json"} if body is not None else None
        return self.session.request(
            method,
            self.base_url + path,
            data=body,
            params=params,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
        )

    def patch_lead(self, lead_id: str, payload: Mapping[str, Any]) -> Any:
        return self.request(
            "PATCH", f"/leads/{quote(lead_id, safe='')}", body=payload_bytes(payload)
        )

    def get_lead(self, lead_id: str) -> Any:
        return self.request("GET", f"/leads/{quote(lead_id, safe='')}")

    def close(self) -> None:
        self.session.close()

    def get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        attempts: int = 4,
        throttle: Throttle | None = None,
    ) -> Any:
        """GET with retries (a GET changes nothing); errors become one-line LeadsyncErrors."""
        import requests
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        class _Again(Exception):
            pass

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(attempts),
                reraise=True,
                retry=retry_if_exception_type((_Again, requests.RequestException)),
                wait=wait_exponential_jitter(multiplier=0.5, max=10, jitter=0.5),
            ):
                with attempt:
                    sent_at = throttle.acquire(threading.Event()) if throttle else None
                    try:
                        response = self.request("GET", path, params=params)
                    except requests.RequestException:
                        if throttle is not None and sent_at is not None:
                            throttle.release(sent_at, None)
                        raise
                    if throttle is not None and sent_at is not None:
                        # the run's throttle sees every request: it shares the server's budget
                        throttle.release(sent_at, response.status_code, response.headers)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Again(f"HTTP {response.status_code}")
        except _Again as exc:
            raise LeadsyncError(f"GET {path} failed: {exc}") from None
        except requests.RequestException as exc:
            raise LeadsyncError(f"GET {path} failed: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise AbortError(refused_key(response.status_code))
        if response.status_code != 200:
            raise LeadsyncError(
                f"GET {path} answered HTTP {response.status_code}: {_server_message(response)}"
            )
        return _json(response)

    def offices(self, throttle: Throttle | None = None) -> list[tuple[int | str, str]]:
        """The account's offices as (id, name); numeric ids as ints, whatever their JSON type."""
        body = self.get_json("/offices", throttle=throttle)
        items = body.get("data", body) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise LeadsyncError("GET /offices did not return a list of offices")
        out: list[tuple[int | str, str]] = []
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                continue
            raw = str(item["id"]).strip()
            oid: int | str = (
                int(float(raw))
                if raw.replace(".", "", 1).isdigit() and float(raw).is_integer()
                else raw
            )
            out.append((oid, str(item.get("name") or "")))
        return out


# -- throttle -----------------------------------------------------------------------


def retry_after_seconds(value: str | None, now_epoch: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now_epoch = time.time() if now_epoch is None else now_epoch
    return max(0.0, when.timestamp() - now_epoch)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


@dataclass
class ThrottleStats:
    requests: int = 0
    rate_limited: int = 0
    waits_for_retry_after: int = 0
    waited_s: float = 0.0


class Throttle:
    """One request gate for the whole run, shared by every worker.

    Pinned mode spaces requests exactly ``1/rate`` apart. Adaptive mode runs an AIMD
    rate (slow start, halve on 429, fast recovery towards the rate that last hit a 429,
    then a slow creep) and, when the server sends ``X-RateLimit-Limit``/``-Remaining``,
    also keeps a budget: it never has more requests out than the window has left, and
    once the window is spent it waits for the reset it learned from the first
    ``Retry-After`` instead of probing again.
    """

    def __init__(self, config: Config, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.pinned = config.rate is not None
        self.max_rate = config.rate if config.rate is not None else config.max_rate
        self.rate = (
            config.rate if config.rate is not None else min(config.start_rate, self.max_rate)
        )
        self.min_rate = min(0.2, self.rate)
        self.cond = threading.Condition()
        self.next_slot = 0.0
        self.pause_until = 0.0
        self.ceiling: float | None = None
        self.last_decrease = -1.0
        self.in_flight = 0
        self.stats = ThrottleStats()
        # header budget (adaptive only)
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.window: float | None = None
        self.window_first_send: float | None = None
        self.new_window = False
        self.refilling = False  # a token bucket: its budget refills continuously
        self.unchanged = 0  # answers in a row that did not lower the remaining budget
        self.most_remaining = 0  # the largest X-RateLimit-Remaining seen
        self.peak_in_flight = 0
        self.probe_out = False

    # the gate ------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> float | None:
        """Block until a request may go out; return its send time, or None if stopped."""
        with self.cond:
            while True:
                if stop.is_set():
                    return None
                now = self.clock()
                wait, probe = self._wait_needed(now)
                if wait <= 0:
                    interval = 1.0 / self.rate
                    # small lateness does not accumulate into a slower rate; a long idle
                    # gap does not turn into a burst
                    self.next_slot = max(self.next_slot, now - 0.2 * interval) + interval
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    self.probe_out = self.probe_out or probe
                    self.stats.requests += 1
                    if self.window_first_send is None:
                        self.window_first_send = now
                    return now
                self.stats.waited_s += min(wait, 0.25)
                self.cond.wait(min(wait, 0.25))

    def _wait_needed(self, now: float) -> tuple[float, bool]:
        """Seconds to wait before the next request, and whether it is a budget probe."""
        if now < self.pause_until:
            return self.pause_until - now, False
        probe = False
        if self._budget_spent():
            if self.reset_at is not None:
                if now < self.reset_at:
                    return self.reset_at - now, False
                # the window has turned over: a fresh budget, learned again from headers
                self.remaining = self.limit
                self.reset_at = None
                self.new_window = True
                self.window_first_send = None
            elif self.in_flight > 0 or self.probe_out:
                return 0.05, False  # wait for an answer before deciding
            else:
                probe = True  # one request to learn when the window resets
        slot = self.next_slot
        return (slot - now if slot > now else 0.0), probe

    def _budget_spent(self) -> bool:
        if self.pinned or self.refilling or self.remaining is None:
            return False
        return self.remaining - self.in_flight <= 0

    # feedback --------------------------------------------------------------------

    def release(
        self, sent_at: float, status: int | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Report how a request went (``status`` None: no answer)."""
        headers = headers or {}
        with self.cond:
            now = self.clock()
            self.in_flight = max(0, self.in_flight - 1)
            was_probe = self.probe_out
            self.probe_out = False
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            limit = _int_header(headers, "X-RateLimit-Limit")
            remaining = _int_header(headers, "X-RateLimit-Remaining")
            reset_epoch = _int_header(headers, "X-RateLimit-Reset")
            if status == 429:
                self.stats.rate_limited += 1
                wait = retry_after
                if wait is None and reset_epoch is not None:
                    wait = max(0.0, reset_epoch - time.time())
                if wait is not None:
                    self.stats.waits_for_retry_after += 1
                    self.pause_until = max(self.pause_until, now + wait)
                    if not self.refilling:
                        self.reset_at = now + wait
                        if self.window_first_send is not None:
                            # an upper bound: Retry-After is rounded up, the window
                            # started no earlier than our first request in it
                            self.window = max(
                                self.window or 0.0, self.reset_at - self.window_first_send
                            )
                        self.remaining = 0
                if not self.pinned and sent_at >= self.last_decrease:
                    self.ceiling = self.rate
                    self.rate = max(self.min_rate, self.rate / 2)
                    self.last_decrease = now
            elif status is not None:
                if limit is not None and remaining is not None and not self.pinned:
                    self._budget_from_headers(
                        limit, remaining, reset_epoch, now, was_probe, sent_at
                    )
                # an empty budget on a refilling server: at its rate now, so hold it there
                # (a bucket of one always shows 0: then the header says nothing)
                at_limit = (
                    self.refilling
                    and remaining is not None
                    and remaining <= 0
                    and self.most_remaining > 0
                )
                if not self.pinned and not at_limit:
                    self._grow()
            self.cond.notify_all()

    def _budget_from_headers(
        self,
        limit: int,
        remaining: int,
        reset_epoch: int | None,
        now: float,
        was_probe: bool,
        sent_at: float,
    ) -> None:
        if (
            was_probe
            and self.remaining is not None
            and self.remaining <= 0
            and self.reset_at is None
        ):
            # a request went through with the budget spent: the server refills as it goes
            self.refilling = True
        self.limit = limit
        self.most_remaining = max(self.most_remaining, remaining)
        if self.new_window and remaining < limit - 2 - self.peak_in_flight:
            # a window that has just turned over starts nearly full; this one did not:
            # the "window" was a token bucket's refill, so stop budgeting
            self.refilling = True
        if self.new_window or self.remaining is None:
            self.remaining = remaining
            if self.new_window and self.window is not None:
                self.reset_at = now + self.window
            self.new_window = False
        elif remaining > self.remaining + self.in_flight + 1:
            # the budget went up by more than answers arriving out of order explain: the
            # server's window turned over, and it started no earlier than this request
            self.remaining = remaining
            self.window_first_send = sent_at
            if self.window is not None:
                self.reset_at = now + self.window
        elif remaining < self.remaining:
            self.remaining = remaining
            self.unchanged = 0
        else:
            # A fixed window's count only goes down: after more answers than could have
            # been in flight together, one must show a lower count. If none does, the
            # server refills its budget continuously (a token bucket): stop budgeting.
            self.unchanged += 1
            if self.unchanged > self.peak_in_flight + 1:
                self.refilling = True
        if reset_epoch is not None:
            self.reset_at = now + max(0.0, reset_epoch - time.time())

    def _grow(self) -> None:
        r = self.rate
        if self.ceiling is None:
            r += 1.0  # slow start: +1 per answer doubles the rate every second
        elif r < 0.9 * self.ceiling:
            r += max(0.5, 0.1 * self.ceiling / max(r, 1.0))  # fast recovery
        else:
            r += 0.02 * self.ceiling / max(r, 1.0)  # creep: +2% of the ceiling a second
            if r > 1.25 * self.ceiling:
                self.ceiling = r  # the server allows more than it did
        self.rate = min(self.max_rate, r)


# -- one row ------------------------------------------------------------------------


class Lookup(NamedTuple):
    """What a --match-by lookup found: the lead, or why not (``failed``: the API could
    not be asked, not that no single lead matched)."""

    lead: str | None
    why: str
    failed: bool


class LeadRead(NamedTuple):
    """What reading a lead gave: its HTTP status (None: no answer, see ``failure``) and
    the lead, when one came back."""

    status: int | None
    lead: dict[str, Any] | None
    failure: str  # why there was no answer ("ConnectionError", "HTTP 503", ...)


@dataclass
class SendResult:
    """How one row's update ended."""

    outcome: str  # updated, rejected, failed, unknown, not_attempted
    http_status: int | None = None
    code: str = ""
    message: str = ""
    attempts: int = 0
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    abort: str | None = None  # set when the whole run must stop (auth)


class _Retry(Exception):
    def __init__(self, reason: str, status: int | None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait


class _Done(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.outcome)
        self.result = result


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

    def send(self, lead_id: str, payload: Mapping[str, Any]) -> SendResult:
        """Send one update; every path ends in a :class:`SendResult`, never an exception."""
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_when_event_set,
            wait_exponential_jitter,
        )

        appends = "questionnaire" in payload and not self.config.resend_ambiguous
        backoff = wait_exponential_jitter(
            multiplier=self.config.backoff_initial,
            max=self.config.backoff_max,
            jitter=self.config.backoff_initial,
        )

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            base = float(backoff(state))
            if isinstance(exc, _Retry) and exc.wait is not None:
                return max(base, exc.wait) if exc.status != 429 else 0.0  # 429: the throttle waits
            return base

        attempts = 0
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.config.max_attempts) | stop_when_event_set(self.stop),
                wait=wait,
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
                "failed",
                exc.status,
                "gave_up",
                f"gave up after {attempts} attempt(s): {exc.reason}{stopping}",
                attempts,
            )
        raise AssertionError("every attempt ends in _Done or _Retry")  # pragma: no cover

    def _attempt(
        self, lead_id: str, payload: Mapping[str, Any], appends: bool, number: int
    ) -> None:
        import requests

        sent_at = self.throttle.acquire(self.stop)
        if sent_at is None:
            if number == 1:
                raise _Done(
                    SendResult(
                        "not_attempted",
                        code="stopped",
                        message="the run stopped before this row was sent",
                    )
                )
            raise _Done(
                SendResult(
                    "failed",
                    None,
                    "stopped",
                    "the run stopped while this row was being retried; it was not applied",
                )
            )
        try:
            response = self.client.patch_lead(lead_id, payload)
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            self.throttle.release(sent_at, None)
            raise _Retry(f"could not connect ({type(exc).__name__})", None) from None
        except requests.ConnectionError as exc:
            self.throttle.release(sent_at, None)
            if _before_sending(exc):
                raise _Retry("could not connect", None) from None
            self._ambiguous(lead_id, payload, appends, "the connection broke after sending", None)
        except requests.Timeout:
            self.throttle.release(sent_at, None)
            self._ambiguous(lead_id, payload, appends, "no answer before the read timeout", None)
        self.throttle.release(sent_at, response.status_code, response.headers)
        status = response.status_code
        if 200 <= status < 300:
            raise _Done(SendResult("updated", status))
        if status in (401, 403):
            raise _Done(
                SendResult(
                    "failed",
                    status,
                    "auth",
                    _server_message(response) or "the API key was refused",
                    abort=refused_key(status),
                )
            )
        if status in _SAFE_STATUS:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None:
                wait = min(wait, self.config.backoff_max * 5)
            raise _Retry(f"HTTP {status}", status, wait)
        if status in _AMBIGUOUS_STATUS or status >= 500:
            self._ambiguous(lead_id, payload, appends, f"HTTP {status}", status)
        if 300 <= status < 400:
            raise _Done(
                SendResult(
                    "failed",
                    status,
                    "redirect",
                    f"the API answered with a redirect (HTTP {status}) "
                    "that leadsync does not follow: check the base URL",
                )
            )
        body = _json(response)
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
                "rejected",
                status,
                f"http_{status}",
                _server_message(response) or f"HTTP {status}",
                field_errors=field_errors,
            )
        )

    def _ambiguous(
        self,
        lead_id: str,
        payload: Mapping[str, Any],
        appends: bool,
        reason: str,
        status: int | None,
    ) -> NoReturn:
        if not appends:
            raise _Retry(reason, status)  # re-sending the same values is harmless
        applied = self.check_applied(lead_id, payload)
        if applied is True:
            raise _Done(
                SendResult(
                    "updated",
                    status,
                    "confirmed",
                    f"{reason}; reading the lead back shows the update applied",
                )
            )
        if applied is False:
            raise _Retry(f"{reason}; the lead shows it was not applied", status)
        raise _Done(
            SendResult(
                "unknown",
                status,
                "ambiguous",
                f"{reason}: the update may have been applied, and its questionnaire answers "
                "would be appended twice if sent again; check the lead, or re-run with "
                "--resend-ambiguous",
            )
        )

    def _get(self, request: Callable[[], Any]) -> Any:
        """A GET (it changes nothing): 429, 5xx and connection failures are retried with
        backoff. Returns the response, or None when the run stopped first; raises the last
        ``requests`` exception or :class:`_Retry` when every attempt failed."""
        import requests
        from tenacity import Retrying, stop_after_attempt, stop_when_event_set
        from tenacity import wait_exponential_jitter as backoff

        for attempt in Retrying(
            stop=stop_after_attempt(self.config.max_attempts) | stop_when_event_set(self.stop),
            wait=backoff(
                multiplier=self.config.backoff_initial,
                max=self.config.backoff_max,
                jitter=self.config.backoff_initial,
            ),
            reraise=True,
            sleep=self.sleep,
        ):
            with attempt:
                sent_at = self.throttle.acquire(self.stop)
                if sent_at is None:
                    return None
                try:
                    response = request()
                except requests.RequestException:
                    self.throttle.release(sent_at, None)
                    raise
                self.throttle.release(sent_at, response.status_code, response.headers)
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retry(f"HTTP {response.status_code}", response.status_code)
        return response

    def find_lead(self, by: str, value: str) -> Lookup:
        """The id of the one lead whose ``by`` (email/phone) is ``value``, or why not.
        Raises :class:`AbortError` when the API refuses the key (the whole run stops)."""
        import requests

        try:
            response = self._get(
                lambda: self.client.request("GET", "/person/leads", params={by: value})
            )
        except requests.RequestException as exc:
            return Lookup(None, f"looking the lead up failed: {type(exc).__name__}", True)
        except _Retry as exc:
            return Lookup(None, f"looking the lead up failed: {exc.reason}", True)
        if response is None:
            return Lookup(None, "the run stopped before the lead was looked up", True)
        status = response.status_code
        if status in (401, 403):
            raise AbortError(refused_key(status))
        if status != 200:
            why = f"looking the lead up failed: HTTP {status} {_server_message(response)}"
            return Lookup(None, why.rstrip(), False)
        body = _json(response)
        items = body.get("data", body) if isinstance(body, dict) else body
        ids = [str(i["id"]) for i in items or [] if isinstance(i, dict) and "id" in i]
        if len(ids) == 1:
            return Lookup(ids[0], "", False)
        if not ids:
            return Lookup(None, f"no lead has the {by} {value!r}", False)
        why = f"{len(ids)} leads have the {by} {value!r} ({', '.join(ids[:5])}): "
        return Lookup(None, why + "add the lead id to the row", False)

    def read_lead(self, lead_id: str) -> LeadRead:
        """``GET /leads/<id>``, throttled and retried like every GET."""
        import requests

        try:
            response = self._get(lambda: self.client.get_lead(lead_id))
        except requests.RequestException as exc:
            return LeadRead(None, None, type(exc).__name__)
        except _Retry as exc:
            return LeadRead(None, None, exc.reason)
        if response is None:
            return LeadRead(None, None, "the run stopped")
        body = _json(response) if response.status_code == 200 else None
        lead = body.get("data", body) if isinstance(body, dict) else None
        return LeadRead(response.status_code, lead if isinstance(lead, dict) else None, "")

    def check_applied(self, lead_id: str, payload: Mapping[str, Any]) -> bool | None:
        """Read the lead back: True applied, False not applied, None cannot tell."""
        lead = self.read_lead(lead_id).lead
        return payload_applied(lead, payload) if lead is not None else None


def payload_applied(lead: Mapping[str, Any], payload: Mapping[str, Any]) -> bool | None:
    """Does ``lead`` show ``payload`` applied? None when it cannot tell."""
    pairs = [tuple(p) for p in payload.get("questionnaire", [])]
    have = [_pair(item) for item in lead.get("questionnaire") or []]
    if pairs and not any(p in have for p in pairs):
        return False  # none of the answers is there: safe to send again
    for key, value in payload.items():
        if key == "questionnaire":
            continue
        if key == "meta":
            meta = lead.get("meta") or {}
            if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in value.items()):
                return None
        elif key not in lead or not _same(lead[key], value):
            return None
    if pairs and have[-len(pairs) :] != pairs:
        return None
    return True


def _pair(item: Any) -> tuple[Any, ...]:
    if isinstance(item, dict):
        return (item.get("question"), item.get("answer"))
    return tuple(item) if isinstance(item, (list, tuple)) else (item,)


def _same(have: Any, want: Any) -> bool:
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


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _server_message(response: Any) -> str:
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return (response.text or "").strip()[:200]
