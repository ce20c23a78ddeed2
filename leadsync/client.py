"""The HTTP client for the Lead API, and the rules every request obeys.

- :class:`LeadClient` — one ``requests.Session`` per worker (keep-alive), timeouts on
  every request, redirects never followed (the key must not travel), ids percent-encoded,
  HTTPS only except on loopback (:func:`check_base_url`);
- the key never leaves in text (:func:`redact`), and a body is pure-ASCII JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from leadsync import __version__
from leadsync.addresses import is_loopback
from leadsync.config import Config
from leadsync.defaults import MAX_RESPONSE_BYTES
from leadsync.errors import LeadsyncError, shown


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash, or a one-line error.

    HTTPS is required except on loopback. The URL is read by the parser that sends
    (urllib3's, as requests uses) as well as by the standard one, and refused when the two
    could disagree about the host: a backslash, userinfo (``user:password@``), spaces or
    control characters; a query string or fragment would end up inside every request's
    path. No message quotes a password.
    """
    shown = _shown_url(url)
    if "\\" in url or any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise LeadsyncError(
            f"base URL {shown!r} has a backslash, a space or a control character: "
            "write it as https://host/api/v103"
        )
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise LeadsyncError(f"base URL {shown!r} is not an http(s) URL")
    if "@" in parts.netloc:
        raise LeadsyncError(
            f"base URL {shown!r} carries a user name or password: leave it out (the API "
            "key is the only credential)"
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise LeadsyncError(
            f"base URL {shown!r} has a query string or fragment, which would end up inside "
            "every request's path: give the API's address only, e.g. https://host/api/v103"
        )
    from urllib3.util import parse_url

    try:
        sent = parse_url(url)
    except ValueError as exc:  # urllib3's LocationParseError
        raise LeadsyncError(f"base URL {shown!r} cannot be parsed ({exc})") from None
    try:
        port = parts.port
    except ValueError:
        raise LeadsyncError(f"base URL {shown!r} has an invalid port") from None
    if (sent.scheme, (sent.host or "").strip("[]").lower(), sent.port) != (
        parts.scheme,
        host.lower(),
        port,
    ):
        raise LeadsyncError(f"base URL {shown!r} can be read as two different hosts: refused")
    if parts.scheme == "http" and not is_loopback(host):
        raise LeadsyncError(f"refusing to send the API key over plain http to {host}: use https://")
    return url.rstrip("/")


def _shown_url(url: str) -> str:
    """``url`` fit to quote in a message: any userinfo (a password) cut out, and cut
    short like every user value (:func:`~leadsync.errors.shown`)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = "***@" + authority.rsplit("@", 1)[1]
        url = f"{scheme}://{authority}{slash}{path}"
    return shown(url)


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

        from leadsync import deadline

        self.base_url = check_base_url(base_url)
        self.timeout = (config.connect_timeout, config.read_timeout)
        self.deadline = config.request_deadline
        self.session = requests.Session()
        deadline.mount(self.session)
        # proxies (HTTPS_PROXY, NO_PROXY) and REQUESTS_CA_BUNDLE from the environment are
        # honoured, as operators behind a corporate proxy expect; TLS is always verified
        if config.ca_bundle:
            self.session.verify = config.ca_bundle
        if is_loopback(urlsplit(self.base_url).hostname or ""):
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
        import requests

        from leadsync.deadline import PastDeadline, watch

        with watch(time.monotonic() + self.deadline) as slot:
            try:
                response: Any = self.session.request(
                    method,
                    self.base_url + path,
                    data=body,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,  # the body is read below, within a size limit
                )
            except requests.RequestException:
                if slot.broken:
                    raise PastDeadline(self.deadline) from None
                raise
            response._content = _bounded_body(response)
        response._content_consumed = True
        return response

    def patch_lead(self, lead_id: str, payload: Mapping[str, Any]) -> Any:
        return self.request(
            "PATCH", f"/leads/{quote(lead_id, safe='')}", body=payload_bytes(payload)
        )

    def post_lead(self, payload: Mapping[str, Any]) -> Any:
        """Create a lead (``POST /leads``): not idempotent, see the sender."""
        return self.request("POST", "/leads", body=payload_bytes(payload))

    def close(self) -> None:
        self.session.close()


def _bounded_body(response: Any) -> bytes:
    """The response body, read (and decompressed) in blocks: at most
    :data:`~leadsync.defaults.MAX_RESPONSE_BYTES`. A body cut short by the limit, or broken
    off (by the server, or by the request's deadline), is dropped (``b""``: unreadable, so
    the status alone decides); the connection is then closed rather than reused."""
    import requests
    import urllib3

    parts: list[bytes] = []
    size = 0
    try:
        # 16 KB compressed is at most ~16 MB unpacked
        while block := response.raw.read1(16 * 1024, decode_content=True):
            size += len(block)
            if size > MAX_RESPONSE_BYTES:
                response.close()
                return b""
            parts.append(block)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        response.close()
        return b""
    return b"".join(parts)


def response_json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def server_message(response: Any) -> str:
    body = response_json(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return (response.text or "").strip()[:200]
