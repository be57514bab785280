"""Group commit: work that many callers hand in at once, written in one transaction per batch.

Items queue while the previous batch is being written and the next batch takes them all, so
under load one commit serves hundreds of callers and when idle an item is written as soon as
it arrives. A batch the database refuses is written again item by item, so one bad item
cannot sink the others. Stopping drains the queue; a writer is never cancelled in the middle
of a transaction.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, TypeVar

log = logging.getLogger("shiftboss.scheduler")
T = TypeVar("T")
#: Most items in one transaction.
MAX_BATCH = 500


class BatchWriter(Generic[T]):
    name = "batch-writer"

    def __init__(self) -> None:
        self.pending: list[T] = []
        self.wake = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            await self.task

    def enqueue(self, item: T) -> None:
        if self.task is None or self.task.done():
            raise RuntimeError(f"{self.name} is not running")
        self.pending.append(item)
        self.wake.set()

    async def _loop(self) -> None:
        while not self.stopping or self.pending:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    await self.write(batch)
                except Exception:
                    if len(batch) > 1:
                        log.info("%s: a batch of %d failed; writing them one by one", self.name, len(batch))
                    for item in batch:
                        try:
                            await self.write([item])
                        except Exception as exc:  # noqa: BLE001 - handed to the item's caller
                            self.failed(item, exc)
                self.answer(batch)

    async def write(self, batch: list[T]) -> None:
        raise NotImplementedError

    def failed(self, item: T, exc: Exception) -> None:
        """The database refused this item on its own."""

    def answer(self, batch: list[T]) -> None:
        """Tell the callers, once their items are committed (or failed)."""
