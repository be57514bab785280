"""In-process fan-out of committed pool and queue changes to Watch streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shiftboss.v1 import pools_pb2

#: A watcher that falls this far behind is cut off rather than let memory grow.
MAX_BACKLOG = 10_000


class Broadcaster:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[pools_pb2.WatchEvent | None]] = set()

    def publish(self, event: pools_pb2.WatchEvent) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= MAX_BACKLOG:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def subscribe(self, pool: str = "") -> Subscription:
        """Register now, so no change committed after this call is missed."""
        queue: asyncio.Queue[pools_pb2.WatchEvent | None] = asyncio.Queue()
        self._subscribers.add(queue)
        return Subscription(self, queue, pool)

    def close(self) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        self._subscribers.clear()


class Subscription:
    def __init__(self, owner: Broadcaster, queue: asyncio.Queue[pools_pb2.WatchEvent | None], pool: str) -> None:
        self._owner, self._queue, self._pool = owner, queue, pool

    def cancel(self) -> None:
        self._owner._subscribers.discard(self._queue)

    async def events(self) -> AsyncIterator[pools_pb2.WatchEvent]:
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    return
                if not self._pool or event.pool.name == self._pool:
                    yield event
        finally:
            self.cancel()
