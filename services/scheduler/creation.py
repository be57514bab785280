"""New flow runs, inserted in one transaction per batch (see batches.py) and handed to the
core under their pools' locks once committed; each caller waits for its own run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.batches import BatchWriter
from shiftboss.services.scheduler.models import FlowRunRow

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService


@dataclass(slots=True)
class NewRun:
    run: FlowRunRow
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class RunInserter(BatchWriter[NewRun]):
    name = "run-inserter"

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self.service = service

    async def add(self, run: FlowRunRow) -> None:
        """Insert the run; returns once it is committed and in the core (raises what the database raised)."""
        item = NewRun(run)
        self.enqueue(item)
        await item.done

    async def write(self, batch: list[NewRun]) -> None:
        service = self.service
        async with service.locks_for(item.run.pool for item in batch):
            async with service.db.transaction() as session:
                await run_store.insert_many(session, [item.run for item in batch])
            for item in batch:
                service.dispatcher.apply(run_store.Transition(item.run, "", states.SCHEDULED))

    def failed(self, item: NewRun, exc: Exception) -> None:
        if not item.done.done():
            item.done.set_exception(exc)

    def answer(self, batch: list[NewRun]) -> None:
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)
