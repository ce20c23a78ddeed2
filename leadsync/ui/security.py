"""The app's gate, in front of every request (an ASGI middleware):

- the ``Host`` header must name this server on loopback (a DNS-rebinding page that
  resolves its own name to 127.0.0.1 is refused);
- every request carries the per-start token: as ``?token=`` once (then it is a cookie,
  and the URL is redirected to one without it), as the cookie, or as a header;
- a request that changes something carries the CSRF token in ``X-CSRF-Token`` (htmx
  and the page's script send it), and an ``Origin``, when sent, must be this server;
- every response has a strict Content-Security-Policy and is not cached.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
TOKEN_HEADER = "x-leadsync-token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Secrets:
    """The per-start secrets: the token in the URL the browser opens, and the CSRF
    token the pages carry. Neither is the API key."""

    token: str
    csrf: str
    port: int

    @property
    def cookie(self) -> str:
        # one cookie per port: two servers on one machine do not log each other out
        return f"leadsync-token-{self.port}"

    def hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}

    def origins(self) -> set[str]:
        return {f"http://{h}" for h in self.hosts()}


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Gate:
    """The ASGI middleware that holds every request to the rules above."""

    def __init__(self, app: ASGIApp, secrets: Secrets) -> None:
        self.app, self.secrets = app, secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_dict(scope)
        s = self.secrets
        if headers.get("host") not in s.hosts():
            await _plain(send, 403, "leadsync ui: this Host is not served (loopback only)")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            cookie = SimpleCookie()
        from_cookie = cookie[s.cookie].value if s.cookie in cookie else None
        if scope["method"] == "GET" and _same(query.get("token"), s.token):
            # the address leadsync printed: keep the token in a cookie, drop it from the URL
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            where = scope["path"] + (f"?{rest}" if rest else "")
            await _redirect(send, where, s)
            return
        if not (_same(from_cookie, s.token) or _same(headers.get(TOKEN_HEADER), s.token)):
            await _plain(
                send, 403, "leadsync ui: open the address `leadsync ui` printed (it has the token)"
            )
            return
        if scope["method"] not in _SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin not in s.origins():
                await _plain(send, 403, "leadsync ui: a request from another site is refused")
                return
            if not _same(headers.get(CSRF_HEADER), s.csrf):
                await _plain(send, 403, "leadsync ui: the page's CSRF token is missing or wrong")
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, where: str, s: Secrets) -> None:
    cookie = f"{s.cookie}={s.token}; Path=/; HttpOnly; SameSite=Strict"
    headers: list[tuple[bytes, bytes]] = [
        (b"location", where.encode()),
        (b"set-cookie", cookie.encode()),
        (b"content-length", b"0"),
        *_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def header_dict(scope: Scope) -> dict[str, str]:
    """A request's headers, lower-cased names."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
