"""A whole request's deadline, however slowly the server answers.

A socket timeout is per read: a server that sends its status line and headers one byte
every few seconds never trips it, and ``requests`` has no total timeout. So every request
runs under :func:`watch`: one watchdog thread shuts down the socket of a request still
going at its deadline, and the blocked read returns at once with an error (the sender
then treats the request like any connection broken off after sending).

The socket is found through the connection classes :func:`mount` puts in a session: each
connection says, as it starts a request, that the current thread is using it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError


class PastDeadline(requests.Timeout):
    """A request had no complete answer by its deadline (the connection was shut down)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within the request deadline ({seconds:g} s)")


_in_use = threading.local()  # .slot: the _Slot of the request this thread is making


def _using(conn: Any) -> None:
    slot = getattr(_in_use, "slot", None)
    if slot is not None:
        slot.conn = conn


class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _using(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _using(self)
        super().request(*args, **kwargs)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        response = super().getresponse(*args, **kwargs)
        slot = getattr(_in_use, "slot", None)
        if slot is not None and slot.broken:
            # a shut-down socket reads as the end of the headers: http.client would hand
            # back a status with whatever headers had arrived, as if it were whole
            raise ProtocolError("the answer's headers were cut off by the request deadline")
        return response


class _HTTPSConnection(HTTPSConnection):
    connect = _HTTPConnection.connect
    request = _HTTPConnection.request
    getresponse = _HTTPConnection.getresponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def mount(session: Any) -> None:
    """Make ``session``'s connections ones :func:`watch` can break off."""
    from requests.adapters import HTTPAdapter

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = _POOLS

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):  # SOCKS has connection classes of its own
                manager.pool_classes_by_scheme = _POOLS
            return manager

    for prefix in ("http://", "https://"):
        session.mount(prefix, Adapter())


class _Slot:
    """One request under watch: the connection it uses, and whether it was broken off."""

    __slots__ = ("broken", "conn", "live")

    def __init__(self) -> None:
        self.conn: Any = None
        self.live = True
        self.broken = False


class _Watchdog:
    """One daemon thread, started on first use, that breaks off overdue requests."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Slot]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, slot: _Slot) -> None:
        with self._cond:
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline, next(self._order), slot))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="leadsync-deadlines", daemon=True
                )
                self._thread.start()
            # wake the watchdog only when this deadline comes first: deadlines are "now +
            # the same span", so almost never (a wake-up per request costs every worker)
            if earliest is None or deadline < earliest:
                self._cond.notify()

    def disarm(self, slot: _Slot) -> None:
        with self._cond:
            slot.live = False  # its heap entry is dropped when it comes up

    def _run(self) -> None:
        import time

        with self._cond:
            while True:
                while self._heap and not self._heap[0][2].live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, slot = heapq.heappop(self._heap)
                slot.live, slot.broken = False, True
                _break(slot.conn)


def _break(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    # the plain socket's shutdown, not SSLSocket's (which drops its TLS state under the
    # reading thread's feet): the read fails at once either way
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def watch(deadline: float) -> Iterator[_Slot]:
    """Run the block as one request that must be over by ``deadline`` (monotonic time):
    past it, the socket of the request the current thread is making is shut down.
    ``slot.broken`` says afterwards whether that happened."""
    slot = _Slot()
    _in_use.slot = slot
    _WATCHDOG.arm(deadline, slot)
    try:
        yield slot
    finally:
        _WATCHDOG.disarm(slot)
        _in_use.slot = None
