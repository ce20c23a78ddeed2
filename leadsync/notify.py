"""Telling someone how an unattended run ended (issue 16): webhooks and email
(``--notify``), a dead-man's switch (``--ping``, healthchecks.io's convention) and a
Prometheus textfile (``--metrics-file``).

Nothing here may change a run's exit code or hold it up for long: every delivery is
tried twice within a few seconds at most (:data:`~leadsync.defaults.NOTIFY_BUDGET` for
all of them), and one that fails is logged and forgotten. The messages carry counts,
row numbers and problem codes — never a cell of a row, never the API key.
"""

from __future__ import annotations

import csv
import smtplib
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from leadsync import __version__, defaults
from leadsync.client import redact
from leadsync.config import Config, shown_target
from leadsync.errors import ExitCode, LeadsyncError
from leadsync.model import OUTCOMES, Outcome

Log = Callable[[str, str], None]  # (level, message)

_FIRST_PROBLEMS = 5  # row numbers and codes a message names


@dataclass
class Notifier:
    """One run's notifications: :meth:`start` pings ``/start``; :meth:`finish` sends what
    the run's end calls for. ``env`` is the environment (the SMTP settings)."""

    config: Config
    env: Mapping[str, str]
    log: Log
    what: str = "leadsync sync"  # "leadsync sync leads.xlsx (job nightly)"
    secret: str | None = None  # the API key: redacted from anything sent
    clock: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.time)
    _deadline: float = 0.0

    def start(self) -> None:
        """``--ping URL``: tell the monitor the run has started (``URL/start``)."""
        if self.config.ping:
            self._deadline = self.clock() + defaults.NOTIFY_BUDGET
            self._post(_ping_url(self.config.ping, "start"), b"", "text/plain", "ping")

    def finish(
        self, exit_code: int, summary: Mapping[str, Any] | None, error: str | None = None
    ) -> None:
        """The run ended with ``exit_code`` (``summary`` when it got that far, else the
        ``error`` that stopped it): ping, notify, write the metrics."""
        self._deadline = self.clock() + defaults.NOTIFY_BUDGET
        line = self._redact(summary_line(self.what, exit_code, summary, error))
        if self.config.metrics_file:
            self._metrics(exit_code, summary)
        if self.config.ping:
            suffix = "" if exit_code == 0 else str(exit_code)
            self._post(_ping_url(self.config.ping, suffix), line.encode(), "text/plain", "ping")
        if not self.config.notify or not wanted(self.config.notify_on, exit_code, summary):
            return
        text = self._redact(message_text(line, summary))
        for target in self.config.notify:
            if target.startswith("mailto:"):
                self._mail(target, line, text)
            else:
                body = {"text": text, "exit_code": exit_code, "summary": summary or {}}
                self._post(target, _json(body), "application/json", "notification")

    # -- deliveries ---------------------------------------------------------------

    def _post(self, url: str, body: bytes, media: str, what: str) -> None:
        import requests

        headers = {"Content-Type": media, "User-Agent": f"leadsync/{__version__}"}

        def attempt(timeout: float) -> str | None:
            try:
                answer = requests.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=min(timeout, 3.0),
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                return type(exc).__name__
            return None if answer.status_code < 300 else f"HTTP {answer.status_code}"

        failure = self._twice(attempt)
        if failure is not None:
            self.log("warning", f"{what} to {shown_target(url)} not delivered ({failure})")

    def _mail(self, target: str, subject: str, text: str) -> None:
        try:
            server = smtp_settings(self.env)
        except LeadsyncError as exc:
            self.log("warning", f"email to {target} not sent: {exc}")
            return
        message = EmailMessage()
        message["Subject"] = subject[:200]
        message["From"] = server.sender
        message["To"] = ", ".join(recipients(target))
        message.set_content(text)

        def attempt(timeout: float) -> str | None:
            try:
                server.send(message, timeout=min(timeout, 4.0))
            except (OSError, smtplib.SMTPException) as exc:
                return type(exc).__name__
            return None

        failure = self._twice(attempt)
        if failure is not None:
            self.log("warning", f"email to {target} not sent via {server.host} ({failure})")

    def _twice(self, attempt: Callable[[float], str | None]) -> str | None:
        """One delivery, tried twice within what is left of the budget (``attempt`` gets
        the seconds it may take): None once delivered, else why not."""
        failure: str | None = None
        for number in range(2):
            left = self._deadline - self.clock()
            if left <= 0.2:
                return "out of time"
            failure = attempt(left)
            if failure is None:
                return None
            if number == 0:
                time.sleep(min(0.3, max(0.0, self._deadline - self.clock())))
        return failure

    def _metrics(self, exit_code: int, summary: Mapping[str, Any] | None) -> None:
        assert self.config.metrics_file is not None
        try:
            write_metrics(
                Path(self.config.metrics_file),
                self.config.job_name or "leadsync",
                exit_code,
                summary,
                self.started,
            )
        except OSError as exc:
            self.log("warning", f"metrics not written to {self.config.metrics_file}: {exc}")

    def _redact(self, text: str) -> str:
        return redact(text, self.secret)


def wanted(notify_on: str, exit_code: int, summary: Mapping[str, Any] | None) -> bool:
    """``--notify-on failure`` (the default): the exit code is not 0, or a row ended
    failed, unknown or rejected; ``always``: every run."""
    if notify_on == "always" or exit_code != 0:
        return True
    counts = (summary or {}).get("outcomes", {})
    return any(counts.get(o, 0) for o in (Outcome.FAILED, Outcome.UNKNOWN, Outcome.REJECTED))


def summary_line(
    what: str, exit_code: int, summary: Mapping[str, Any] | None, error: str | None
) -> str:
    """The run in one line: what ran, its exit code, its counts (or what stopped it)."""
    verdict = {0: "ok", 1: "rows need attention", 2: "could not run", 3: "aborted"}.get(
        exit_code, "failed"
    )
    head = f"{what}: exit {exit_code} ({verdict})"
    if summary is None:
        return f"{head}: {error or 'no summary'}"
    counts = summary.get("outcomes", {})
    parts = [f"{counts[o]:,} {o}" for o in OUTCOMES if counts.get(o)]
    line = f"{head}: {', '.join(parts) or 'no rows'}"
    if summary.get("aborted"):
        line += f"; stopped: {summary['aborted']}"
    return line


def message_text(line: str, summary: Mapping[str, Any] | None) -> str:
    """The notification: the line, the first problems (row numbers and codes only) and
    where the reports are."""
    lines = [line]
    if summary is not None:
        first = first_problems(summary)
        if first:
            lines.append("first problems: " + ", ".join(f"row {r} {c}" for r, c in first))
        where = summary.get("reports", {}).get("failures")
        if where:
            lines.append(f"reports: {Path(where).parent}")
    return "\n".join(lines)


def first_problems(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The first rows of failures.csv as (row, code): nothing else of the row."""
    path = summary.get("reports", {}).get("failures")
    if not path:
        return []
    out: list[tuple[str, str]] = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for record in csv.DictReader(fh):
                pair = (record.get("row") or "?", record.get("code") or "?")
                if pair not in out:
                    out.append(pair)
                if len(out) >= _FIRST_PROBLEMS:
                    break
    except (OSError, csv.Error, UnicodeDecodeError):
        return out
    return out


def _ping_url(url: str, suffix: str) -> str:
    """healthchecks.io: ``URL/start``, ``URL`` (success), ``URL/<exit code>``."""
    if not suffix:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


def recipients(target: str) -> list[str]:
    """``mailto:a@x.com,b@y.com`` -> the addresses (a query part is ignored)."""
    path = urlsplit(target).path
    return [unquote(a).strip() for a in path.split(",") if a.strip()]


@dataclass(frozen=True)
class Smtp:
    """Where email goes: ``LEADSYNC_SMTP_URL`` (``smtp://user:pass@host:587``, STARTTLS;
    ``smtps://`` for TLS from the start) and ``LEADSYNC_SMTP_FROM``."""

    host: str
    port: int
    tls: str  # "starttls", "ssl", or "none" (a server on this machine only)
    user: str | None
    password: str | None
    sender: str

    def send(self, message: EmailMessage, timeout: float) -> None:
        import ssl

        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.tls == "ssl":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=timeout)
        with client:
            if self.tls == "starttls":
                client.starttls(context=context)
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)


def smtp_settings(env: Mapping[str, str]) -> Smtp:
    """The SMTP server from the environment, or a :class:`LeadsyncError` saying what to
    set. Plain SMTP (no TLS) is allowed to this machine only."""
    from leadsync.addresses import is_loopback

    url = env.get(defaults.ENV_SMTP_URL, "")
    if not url:
        raise LeadsyncError(f"set {defaults.ENV_SMTP_URL} (smtp://user:password@host:587)")
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise LeadsyncError(f"{defaults.ENV_SMTP_URL} must be smtp://host:port or smtps://...")
    local = is_loopback(parts.hostname)
    tls = "ssl" if parts.scheme == "smtps" else ("none" if local else "starttls")
    port = parts.port or (465 if tls == "ssl" else 587 if tls == "starttls" else 25)
    sender = env.get(defaults.ENV_SMTP_FROM) or f"leadsync@{socket.gethostname()}"
    return Smtp(
        parts.hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        sender,
    )


def write_metrics(
    path: Path, job: str, exit_code: int, summary: Mapping[str, Any] | None, started: float
) -> None:
    """The run's figures in the Prometheus text format, for node_exporter's textfile
    collector (written to a temporary file and renamed: never half a file)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, **labels: str) -> None:
        g = Gauge(f"leadsync_{name}", doc, ["job", *labels], registry=registry)
        g.labels(job=job, **labels).set(value)

    now = time.time()
    sending = (summary or {}).get("sending", {})
    gauge("run_start_timestamp_seconds", "When the last run started.", started)
    gauge("run_end_timestamp_seconds", "When the last run ended.", now)
    gauge("run_duration_seconds", "How long the last run took.", now - started)
    gauge("run_exit_code", "The last run's exit code (0: every row fine).", exit_code)
    gauge("run_success", "1 when the last run exited 0.", 1.0 if exit_code == 0 else 0.0)
    gauge("run_requests", "Requests the last run sent.", float(sending.get("requests", 0)))
    gauge(
        "run_rate_limited",
        "Requests the last run had answered 429.",
        float(sending.get("rate_limited_429", 0)),
    )
    rows = Gauge("leadsync_run_rows", "The last run's rows per outcome.", ["job", "outcome"],
                 registry=registry)  # fmt: skip
    counts = (summary or {}).get("outcomes", {})
    for outcome in OUTCOMES:
        rows.labels(job=job, outcome=outcome.value).set(float(counts.get(outcome, 0)))
    write_to_textfile(str(path), registry)


def exit_code_of(exc: BaseException) -> int:
    """The exit code the CLI's error boundary gives ``exc``."""
    if isinstance(exc, LeadsyncError):
        return int(exc.exit_code)
    if isinstance(exc, (KeyboardInterrupt, OSError)):
        return int(ExitCode.ABORTED)
    return int(ExitCode.INTERNAL)


def _json(body: Any) -> bytes:
    import json

    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
