"""``leadsync ui``: a local web app over the library, on 127.0.0.1 only, behind a
per-start token (:mod:`leadsync.ui.security`)."""

from __future__ import annotations

import secrets
import signal
import socket
import threading
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path

from leadsync.ui.security import Secrets
from leadsync.ui.workspace import DEFAULT_MAX_UPLOAD, Workspace

__all__ = ["DEFAULT_MAX_UPLOAD", "Server", "Workspace"]


class Server:
    """The app served by uvicorn on 127.0.0.1 in a thread (``start``/``stop``) or in the
    foreground (``run``); ``url`` carries the token."""

    def __init__(self, workspace: Workspace, port: int = 0) -> None:
        import uvicorn

        from leadsync.ui.app import create_app

        self.workspace = workspace
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))  # loopback only, whatever the port
        self.port = int(self.sock.getsockname()[1])
        self.secrets = Secrets(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.port)
        app = create_app(workspace, self.secrets)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, server_header=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/?token={self.secrets.token}"

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until interrupted (Ctrl-C, SIGTERM), then remove the private folder."""
        if ready is not None:
            threading.Thread(target=self._when_ready, args=(ready,), daemon=True).start()
        previous = None
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the signal that stopped it once it has shut down: with
            # SIGTERM's default action the process would die before the folder of
            # uploads is removed, so SIGTERM ends it the way Ctrl-C does
            previous = signal.signal(signal.SIGTERM, _as_interrupt)
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.workspace.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _when_ready(self, ready: Callable[[], None]) -> None:
        while not self.server.started and not self.server.should_exit:
            threading.Event().wait(0.02)
        if self.server.started:
            ready()

    def start(self) -> Server:
        """Serve in a background thread; returns once the server accepts requests."""
        started = threading.Event()
        self.thread = threading.Thread(
            target=self.run, args=(started.set,), name="leadsync-ui", daemon=True
        )
        self.thread.start()
        if not started.wait(timeout=30):
            raise RuntimeError("leadsync ui did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    env: Mapping[str, str],
    *,
    port: int,
    open_browser: bool,
    announce: Callable[[str], None],
    mapping: Path | None = None,
    journal: Path | None = None,
    key_file: Path | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
) -> None:
    """``leadsync ui``: serve until Ctrl-C; print (and open) the address with the token."""
    workspace = Workspace(
        env, mapping=mapping, journal=journal, key_file=key_file, max_upload=max_upload
    )
    try:
        server = Server(workspace, port)
    except BaseException:
        workspace.close()
        raise

    def ready() -> None:
        announce(f"leadsync ui: open {server.url}")
        announce("  (Ctrl-C here stops it; the files you uploaded are removed then)")
        if open_browser:
            webbrowser.open(server.url)

    server.run(ready)
