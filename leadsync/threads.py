"""Thread helpers: read ahead while the current block is checked, run GIL-free work
(hashing, zlib, calamine) beside the main thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a thread, up to ``depth`` ahead: pyarrow parses the next
    block (outside the GIL) while this thread checks the current one."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ahead.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((_DONE, None))
        except BaseException as exc:  # re-raised in the consumer
            ahead.put((_DONE, exc))

    thread = threading.Thread(target=run, daemon=True, name="leadsync-read")
    thread.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def in_thread(function: Callable[..., Any], *args: Any, name: str) -> Future[Any]:
    """Run ``function`` in a daemon thread; its result (or exception) in the future.
    Worth it for work that mostly runs outside the GIL (hashing, zlib, calamine)."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name=name).start()
    return future
