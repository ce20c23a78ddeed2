"""The HTTP client for the Lead API, and the rules every request obeys.

- :class:`LeadClient` — one ``requests.Session`` per worker (keep-alive), timeouts on
  every request, redirects never followed (the key must not travel), ids percent-encoded,
  HTTPS only except on loopback (:func:`check_base_url`);
- the key never leaves in text (:func:`redact`), and a body is pure-ASCII JSON.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from leadsync import __version__
from leadsync.config import Config
from leadsync.errors import LeadsyncError


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; HTTPS required except on loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise LeadsyncError(f"base URL {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(host):
        raise LeadsyncError(f"refusing to send the API key over plain http to {host}: use https://")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``[::1]`` with or without brackets)."""
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

    def close(self) -> None:
        self.session.close()


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
