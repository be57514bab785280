"""New flow runs: their deployments read and the runs inserted in one statement per batch
(see batches.py), then handed to the core under their pools' locks once committed; each
caller waits for its own run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shiftboss.errors import NotFound
from shiftboss.services.scheduler import deployments
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.batches import BatchWriter
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunRow

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass(slots=True)
class Lookup:
    name: str
    done: asyncio.Future[DeploymentRow] = field(default_factory=_future)


class DeploymentReader(BatchWriter[Lookup]):
    """The deployments new runs name, read with one query for all the runs asked for
    meanwhile: under load one read serves a whole burst instead of one per run."""

    name = "deployment-reader"

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self.service = service

    async def get(self, name: str) -> DeploymentRow:
        """The deployment as the database holds it now (NotFound if there is none)."""
        item = Lookup(name)
        self.enqueue(item)
        return await item.done

    async def write(self, batch: list[Lookup]) -> None:
        async with self.service.db.reading() as session:
            found = await deployments.get_many(session, {item.name for item in batch})
        for item in batch:
            if item.done.done():
                continue
            row = found.get(item.name)
            if row is None:
                item.done.set_exception(NotFound(f"deployment {item.name!r} not found", field="deployment"))
            else:
                item.done.set_result(row)

    def failed(self, item: Lookup, exc: Exception) -> None:
        if not item.done.done():
            item.done.set_exception(exc)


@dataclass(slots=True)
class NewRun:
    run: FlowRunRow
    done: asyncio.Future[None] = field(default_factory=_future)


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
