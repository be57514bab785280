"""New flow runs: their deployments, and the runs inserted in one statement per batch (see
batches.py), then handed to the core under their pools' locks once committed; each caller
waits for its own run.

Deployments are kept between runs rather than read for each, and checked where it counts:
the transaction that inserts a batch reads the `updated` stamp of the batch's deployments
(share-locked on PostgreSQL until commit), and a run made from a deployment that changed
meanwhile, here or on another replica, or was deleted, is not written; its caller makes it
again from the deployment as it now is. No run is ever written from a stale deployment,
and a burst of runs costs no read per run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from shiftboss.errors import NotFound
from shiftboss.services.scheduler import deployments, hot
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.batches import BatchWriter
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


#: Deployments kept; past this many the reader starts afresh.
MAX_KEPT = 10_000


class StaleDeployment(Exception):
    """The deployment a new run was made from changed before the run was written."""


@dataclass(slots=True)
class Lookup:
    name: str
    done: asyncio.Future[DeploymentRow] = field(default_factory=_future)


class DeploymentReader(BatchWriter[Lookup]):
    """The deployments new runs name: kept once read, and read with one query for all the
    runs that ask for one not kept."""

    name = "deployment-reader"

    def __init__(self, service: Scheduler) -> None:
        super().__init__()
        self.service = service
        self.kept: dict[str, DeploymentRow] = {}

    async def get(self, name: str) -> DeploymentRow:
        """The deployment as last read (NotFound if there was none)."""
        row = self.kept.get(name)
        if row is None:
            item = Lookup(name)
            self.enqueue(item)
            row = await item.done
            if len(self.kept) >= MAX_KEPT:
                self.kept.clear()
            self.kept[name] = row
        return row

    def forget(self, row: DeploymentRow) -> None:
        """Read this deployment again next time (it changed)."""
        if self.kept.get(row.name) is row:
            del self.kept[row.name]

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
    run: FlowRunDraft
    #: The deployment as it was when the run was made from it.
    made_from: DeploymentRow
    done: asyncio.Future[None] = field(default_factory=_future)


class RunInserter(BatchWriter[NewRun]):
    name = "run-inserter"

    def __init__(self, service: Scheduler) -> None:
        super().__init__()
        self.service = service

    async def add(self, run: FlowRunDraft, made_from: DeploymentRow) -> None:
        """Insert the run; returns once it is committed and in the core. Raises StaleDeployment
        if `made_from` changed meanwhile, else what the database raised."""
        item = NewRun(run, made_from)
        self.enqueue(item)
        await item.done

    async def write(self, batch: list[NewRun]) -> None:
        """Without the pools' locks, unlike every other state change: a new run holds no slot,
        so its insert may commit while an admission pass or a batch of outcomes of the same
        pool is in its own transaction (on PostgreSQL they overlap; SQLite's one writer
        orders them anyway). Nothing else moves the run before it reaches the core, but for
        a cancel that found it committed first (a deleted deployment): then the core holds a
        run that is no longer SCHEDULED, which the admission pass's lease, guarded by the
        state, refuses and the core forgets."""
        service = self.service
        stamps = one_stamp_each(batch)
        told: set[str] = set()
        if stamps is not None and not service.db.is_sqlite and all(map(service.ownership.owns, {item.run.pool for item in batch})):
            # One statement, a transaction of its own: it checks the stamps as it inserts.
            async with hot.one_statement(service.db) as statements:
                await statements.insert_fresh_runs([item.run for item in batch], stamps)
            fresh = [item for item in batch if item.run.seq]
        else:
            async with hot.transaction(service.db) as db:
                current = await db.stamps({item.made_from.id for item in batch})
                fresh = [item for item in batch if current.get(item.made_from.id) == item.made_from.updated]
                await db.insert_runs([item.run for item in fresh])
                # Runs of pools another replica dispatches: its core learns of them at commit.
                told = await service.ownership.tell_new_runs(db, [item.run for item in fresh])
        into_core(service, [item.run for item in fresh], told)
        if len(fresh) < len(batch):
            written = {id(item) for item in fresh}
            for item in batch:
                if id(item) not in written and not item.done.done():
                    service.deployment_reader.forget(item.made_from)
                    item.done.set_exception(StaleDeployment(item.made_from.name))

    def failed(self, item: NewRun, exc: Exception) -> None:
        if not item.done.done():
            item.done.set_exception(exc)

    def answer(self, batch: list[NewRun]) -> None:
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)


def one_stamp_each(batch: list[NewRun]) -> dict[str, datetime] | None:
    """Each deployment's `updated` as the batch's runs were made from it; None when two
    runs were made from different versions of one deployment (checked run by run then)."""
    stamps: dict[str, datetime] = {}
    for item in batch:
        if stamps.setdefault(item.made_from.id, item.made_from.updated) != item.made_from.updated:
            return None
    return stamps


def into_core(service: Scheduler, runs: list[FlowRunDraft], told: set[str]) -> None:
    """Committed new runs into the core, all before the next admission pass (this is one
    step of the event loop); those of pools owned elsewhere that the insert's transaction
    did not tell (this replica lost the pool meanwhile), told to the new owner now."""
    elsewhere: dict[str, list[FlowRunDraft]] = {}
    for run in runs:
        service.dispatcher.apply(run_store.Transition(run, "", states.SCHEDULED))
        if not service.dispatcher.owns(run.pool) and run.pool not in told:
            elsewhere.setdefault(run.pool, []).append(run)
    for pool, added in elsewhere.items():
        service.ownership.tell_runs(pool, added=added)
