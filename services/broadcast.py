"""In-process fan-out of committed changes to the streams that watch them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: A watcher that falls this far behind is cut off rather than let memory grow.
MAX_BACKLOG = 10_000


class Broadcaster(Generic[T]):
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[T | None]] = set()

    def publish(self, event: T) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= MAX_BACKLOG:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes now: events nobody will read need not be built."""
        return bool(self._subscribers)

    def subscribe(self, accept: Callable[[T], bool] | None = None) -> Subscription[T]:
        """Register now, so no change published after this call is missed."""
        queue: asyncio.Queue[T | None] = asyncio.Queue()
        self._subscribers.add(queue)
        return Subscription(self, queue, accept)

    def close(self) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        self._subscribers.clear()


class Subscription(Generic[T]):
    def __init__(self, owner: Broadcaster[T], queue: asyncio.Queue[T | None], accept: Callable[[T], bool] | None) -> None:
        self._owner, self._queue, self._accept = owner, queue, accept

    def cancel(self) -> None:
        self._owner._subscribers.discard(self._queue)

    async def events(self) -> AsyncIterator[T]:
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    return
                if self._accept is None or self._accept(event):
                    yield event
        finally:
            self.cancel()
