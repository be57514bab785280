"""Observable gauges over state that the event loop owns.

A metric reader calls gauge callbacks on its own thread (the periodic exporter's), while
the scheduling core and the services' maps are changed by the event loop, unlocked. So a
callback never reads them itself: it asks the loop for a copy and waits for it briefly.
Called on the loop's own thread (a reader collected from a coroutine), it reads directly.
A loop that is closed, stopped or too busy to answer gives nothing this time, rather
than a torn reading.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("shiftboss.telemetry")
T = TypeVar("T")

#: Longest a reader waits for the loop.
WAIT_SECONDS = 2.0
#: A reading is shared by the gauges of one collection: by at most `readers` callbacks,
#: within this many seconds.
FRESH_SECONDS = 0.5


class LoopReading(Generic[T]):
    """A copy of loop-owned state, taken on the loop by `read` (sync) or `read_async`."""

    def __init__(
        self,
        read: Callable[[], T] | None = None,
        read_async: Callable[[], Awaitable[T]] | None = None,
        readers: int = 1,
    ) -> None:
        self._read = read
        self._read_async = read_async
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.closed = False
        self._last: T | None = None
        self._taken = 0.0
        self._readers = readers
        self._served = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed = True

    def get(self) -> T | None:
        """The state as the loop last copied it; None when it cannot be had."""
        if self.closed:
            return None
        with self._lock:
            fresh = self._served < self._readers and time.monotonic() - self._taken < FRESH_SECONDS
            if self._last is not None and fresh:
                self._served += 1
                return self._last
            value = self._take()
            if value is not None:
                self._last, self._taken, self._served = value, time.monotonic(), 1
            return value

    def _take(self) -> T | None:
        if threading.get_ident() == self.thread:
            # On the loop itself: a sync read is safe; an async one cannot be awaited here.
            return self._read() if self._read is not None else self._last
        if self.loop.is_closed() or not self.loop.is_running():
            return None
        try:
            if self._read_async is not None:
                future = asyncio.run_coroutine_threadsafe(self._read_async(), self.loop)  # type: ignore[arg-type]
            else:
                future = concurrent.futures.Future()
                read = self._read
                assert read is not None

                def on_loop() -> None:
                    try:
                        future.set_result(read())
                    except BaseException as exc:  # noqa: BLE001 - handed to the reader
                        future.set_exception(exc)

                self.loop.call_soon_threadsafe(on_loop)
            return future.result(WAIT_SECONDS)
        except RuntimeError:  # the loop closed meanwhile
            return None
        except concurrent.futures.TimeoutError:
            log.debug("the event loop did not answer a metric reader within %.1fs", WAIT_SECONDS)
            return None
        except Exception:
            log.warning("reading a gauge failed", exc_info=True)
            return None
