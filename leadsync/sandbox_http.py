"""The sandbox's HTTP side: the request handler that serves the Lead API of spec §1 and
§4b from a :class:`~leadsync.sandbox.Sandbox`'s leads, with its rate limit and faults."""

from __future__ import annotations

import copy
import json
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from leadsync.fields import API_VERSION_PATH, Operation
from leadsync.rules import check_payload
from leadsync.sandbox_limits import limit_headers

if TYPE_CHECKING:
    from leadsync.sandbox import Sandbox

ADMIN = "/_sandbox"
_LEAD_PATH = re.compile(rf"{API_VERSION_PATH}/leads/([^/]+)")
_LEADS_PATH = f"{API_VERSION_PATH}/leads"


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away (killed, timed out) is not the server's fault
        super().handle_error(request, client_address)


@dataclass
class _Reply:
    status: int | str  # an HTTP status, or the after-apply fault that replaces the answer
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None


class Handler(BaseHTTPRequestHandler):
    sandbox: Sandbox
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive responses stall ~40 ms (spec §10)
    server_version = "leadsync-sandbox"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the stats endpoint is the record

    def do_GET(self) -> None:
        self._route("GET")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # -- plumbing ----------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            # linger 0: close with a reset, as a crashed server or proxy would
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _route(self, method: str) -> None:
        sb = self.sandbox
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        body = self._body()
        if path.startswith(ADMIN):
            self._admin(method, path)
            return
        with sb.lock:
            sb.requests += 1
            sb.in_flight += 1
            sb.max_in_flight = max(sb.max_in_flight, sb.in_flight)
            entry: dict[str, Any] = {
                "t": round(time.monotonic() - sb.started, 4),
                "method": method,
                "path": path,
                "status": None,
            }
            sb.log.append(entry)
        reply = _Reply("error", {"message": "Server Error"})
        try:
            reply = self._api(method, path, parts.query, body, entry)
        finally:
            # recorded before the client hears back, so stats never lag a response
            with sb.lock:
                sb.in_flight -= 1
                entry["status"] = reply.status
                if isinstance(reply.status, int):
                    sb.by_status[reply.status] += 1
                if reply.fault:
                    sb.faults[reply.fault] += 1
                    entry["fault"] = reply.fault
        if reply.status in ("drop_after", "stall_after"):
            if reply.status == "stall_after":
                time.sleep(sb.config.stall_seconds)
            self._drop()
        else:
            self._send(int(reply.status), reply.body, reply.headers)

    def _api(
        self, method: str, path: str, query: str, body: bytes, entry: dict[str, Any]
    ) -> _Reply:
        sb, c = self.sandbox, self.sandbox.config
        key = self.headers.get("X-API-KEY")
        if not key or (key != c.api_key and key not in c.revoked_keys):
            return _Reply(401, {"message": "Unauthenticated."})
        if key in c.revoked_keys:
            return _Reply(403, {"message": "This API key has been revoked."})
        headers: dict[str, str] = {}
        if sb.limiter is not None:
            verdict = sb.limiter.take()
            if c.rate_headers_on == "all" or not verdict.allowed:
                headers = limit_headers(
                    verdict, c.rate_headers, c.window, c.retry_after, time.time()
                )
            if not verdict.allowed:
                time.sleep(c.latency)  # a refusal travels as far as any answer
                return _Reply(429, {"message": "Too Many Attempts."}, headers)
        if c.latency:
            time.sleep(c.latency)
        fault = sb.draw(method)
        if fault == "503":
            return _Reply(
                503,
                {"message": "Service Unavailable"},
                {**headers, "Retry-After": "1"},
                fault="503",
            )
        status, response = self._handle(method, path, query, body, entry)
        if fault is not None and status < 300:
            if fault == "500_after":
                return _Reply(500, {"message": "Server Error"}, headers, fault=fault)
            return _Reply(fault, None, fault=fault)
        return _Reply(status, response, headers)

    def _handle(
        self, method: str, path: str, query: str, body: bytes, entry: dict[str, Any]
    ) -> tuple[int, Any]:
        sb = self.sandbox
        if path == _LEADS_PATH:
            if method != "POST":
                return 405, {"message": f"The {method} method is not supported for this route."}
            return self._create(body, entry)
        m = _LEAD_PATH.fullmatch(path)
        if m:
            lead_id = unquote(m.group(1))
            entry["lead"] = lead_id
            if method not in ("GET", "PATCH"):
                return 405, {"message": f"The {method} method is not supported for this route."}
            lead = sb.lead(lead_id)
            if lead is None:
                return 404, {"message": f"Lead {lead_id} not found."}
            if method == "GET":
                return 200, {"data": lead}
            payload, refusal = self._payload(body, entry, Operation.UPDATE)
            if refusal is not None:
                return refusal
            entry["applied"] = True
            return 200, {"data": sb.apply(lead_id, payload)}
        if method != "GET":
            return 405, {"message": f"The {method} method is not supported for this route."}
        if path == f"{API_VERSION_PATH}/offices":
            # the real API mixes string and number ids: so does the sandbox
            data = [
                {"id": str(oid) if i % 2 == 0 else oid, "name": name}
                for i, (oid, name) in enumerate(sb.config.offices)
            ]
            return 200, {"data": data}
        if path == f"{API_VERSION_PATH}/person/leads":
            params = parse_qs(query)
            email = (params.get("email") or [""])[0].strip().casefold()
            phone = "".join(ch for ch in (params.get("phone") or [""])[0] if ch.isdigit())
            if not email and not phone:
                return 422, {
                    "message": "The given data was invalid.",
                    "errors": {"email": ["The email field is required when phone is not present."]},
                }
            if (email or phone) in sb.config.lookup_503:
                return 503, {"message": "Service Unavailable"}
            with sb.lock:
                found = [
                    copy.deepcopy(lead)
                    for lead in sb.leads.values()
                    if (email and str(lead.get("email", "")).casefold() == email)
                    or (
                        phone
                        and "".join(ch for ch in str(lead.get("phone", "")) if ch.isdigit())
                        == phone
                    )
                ]
            return 200, {"data": found}
        return 404, {"message": "Not Found"}

    def _payload(
        self, body: bytes, entry: dict[str, Any], operation: Operation
    ) -> tuple[dict[str, Any], tuple[int, Any] | None]:
        """The request's JSON object, vetted by the API's rules for ``operation``; or the
        answer that refuses it (415, 400, 422 per field)."""
        sb = self.sandbox
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            # strict, as a JSON API may be: a form-encoded body would lose every field
            refusal = {"message": "The body must be sent as Content-Type: application/json."}
            return {}, (415, refusal)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {}, (400, {"message": "Malformed JSON body."})
        entry["body"] = payload
        if not isinstance(payload, dict):
            return {}, (400, {"message": "The body must be a JSON object."})
        problems = check_payload(
            payload,
            require_names=sb.config.require_names,
            office_ids=sb.office_ids(),
            operation=operation,
        )
        if problems:
            errors = {f: [msg for _, msg in items] for f, items in problems.items()}
            return {}, (422, {"message": "The given data was invalid.", "errors": errors})
        return payload, None

    def _create(self, body: bytes, entry: dict[str, Any]) -> tuple[int, Any]:
        """``POST /leads``: a new lead, its id in the answer (as the config says)."""
        payload, refusal = self._payload(body, entry, Operation.CREATE)
        if refusal is not None:
            return refusal
        lead = self.sandbox.create(payload)
        entry["applied"] = True
        entry["lead"] = lead["id"]
        shape = self.sandbox.config.create_answer
        if shape == "data":
            return 201, {"data": lead}
        if shape == "flat":
            return 201, lead
        return 201, {"message": "Lead created."}

    def _admin(self, method: str, path: str) -> None:
        sb = self.sandbox
        if path == f"{ADMIN}/stats" and method == "GET":
            self._send(200, sb.stats())
        elif path == f"{ADMIN}/log" and method == "GET":
            self._send(200, sb.requests_log())
        elif path == f"{ADMIN}/reset" and method == "POST":
            sb.reset()
            self._send(200, {"reset": True})
        elif path.startswith(f"{ADMIN}/leads/") and method == "GET":
            lead = sb.lead(unquote(path.rsplit("/", 1)[1]))
            self._send(200 if lead else 404, lead or {"message": "Not Found"})
        else:
            self._send(404, {"message": "Not Found"})
