"""The scheduler's long-running tasks: following pools and workers, leases, schedules, beats.

None of them is on the dispatch path: admission is kicked by events (see dispatch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from shiftboss.errors import ShiftbossError
from shiftboss.services.scheduler import deployments, schedules, states
from shiftboss.services.scheduler import runs as run_store
from shiftboss.v1 import heartbeats_pb2, heartbeats_pb2_grpc, pools_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

log = logging.getLogger("shiftboss.scheduler")
Event = pools_pb2.WatchEvent


def start_all(service: Scheduler) -> list[asyncio.Task[None]]:
    jobs: list[tuple[str, Callable[[Scheduler], Awaitable[None]]]] = [
        ("follow-pools", follow_pools),
        ("follow-workers", follow_workers),
        ("leases", expire_leases),
        ("schedules", create_scheduled_runs),
        ("beats", flush_beats),
    ]
    return [asyncio.create_task(_forever(name, job, service), name=f"scheduler-{name}") for name, job in jobs]


async def _forever(name: str, job: Callable[[Scheduler], Awaitable[None]], service: Scheduler) -> None:
    """Run a job again after it fails (a peer restarting, a database hiccup), with jittered backoff."""
    delay = 0.1
    while True:
        try:
            await job(service)
            delay = 0.1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("scheduler task %s failed, retrying in %.1fs: %s", name, delay, exc)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 5.0)


async def follow_pools(service: Scheduler) -> None:
    """Mirror pools and queues in the core from PoolService.Watch (the initial state, then changes)."""
    dispatcher = service.dispatcher
    seen_pools: set[str] = set()
    seen_queues: set[tuple[str, str]] = set()
    synced = False
    async for event in service.mesh.peers.stream(service.pools.Watch, pools_pb2.WatchRequest(initial=True)):
        if event.kind == Event.SYNCED:
            for name in set(dispatcher.pools) - seen_pools:
                dispatcher.drop_pool(name)
            for name, runtime in dispatcher.pools.items():
                for queue in set(runtime.state.queues()) - {q for p, q in seen_queues if p == name}:
                    dispatcher.drop_queue(name, queue)
            async with service.db.reading() as session:
                dispatcher.load(await run_store.live(session))
            synced = True
            service.ready.set()
            continue
        if event.kind == Event.DELETED:
            if event.HasField("queue"):
                dispatcher.drop_queue(event.pool.name, event.queue.name)
            else:
                dispatcher.drop_pool(event.pool.name)
            continue
        if event.HasField("queue"):
            if event.renamed_from:  # a no-op when this server made the rename itself
                await service.rename_queue(event.pool.name, event.renamed_from, event.queue.name)
            dispatcher.apply_queue(event.pool, event.queue)
            if not synced:
                seen_queues.add((event.pool.name, event.queue.name))
        else:
            dispatcher.apply_pool(event.pool)
            if not synced:
                seen_pools.add(event.pool.name)


async def reclaim(service: Scheduler, worker: str, reason: str) -> None:
    """A lost worker's runs: un-started ones go back to SCHEDULED, started ones are CRASHED."""
    session = service.dispatcher.sessions.get(worker)
    if session is not None:
        session.close()
    async with service.db.reading() as db:
        held = await run_store.held_by(db, worker)
    for run in held:
        if run.state == states.PENDING and run.started is None:
            target, message = states.SCHEDULED, f"{reason} before starting it"
        elif run.state == states.CANCELLING:
            target, message = states.CANCELLED, reason
        else:
            target, message = states.CRASHED, reason
        with contextlib.suppress(ShiftbossError):
            await service.change_state(run.id, target, lease=run.lease, worker=worker, message=message)
    if held:
        log.info("reclaimed %d runs of worker %s: %s", len(held), worker, reason)


async def follow_workers(service: Scheduler) -> None:
    stub = service.mesh.peers.stub("heartbeats", heartbeats_pb2_grpc.HeartbeatServiceStub)
    stream = service.mesh.peers.stream(stub.WatchWorkers, heartbeats_pb2.WatchWorkersRequest())
    await service.ready.wait()
    # Workers that went OFFLINE while nobody watched still hold runs in the database.
    listed = await service.call(stub.ListWorkers, heartbeats_pb2.ListWorkersRequest())
    online = {f"{w.pool}/{w.name}" for w in listed.workers if w.status == heartbeats_pb2.ONLINE}
    async with service.db.reading() as db:
        holders = await run_store.holders(db)
    for worker in sorted(holders - online - set(service.dispatcher.sessions)):
        await reclaim(service, worker, f"worker {worker} is offline")
    async for event in stream:
        worker = event.worker
        key = f"{worker.pool}/{worker.name}"
        if worker.status == heartbeats_pb2.OFFLINE:
            if not service.dispatcher.owns(worker.pool):  # another replica dispatches its pool
                service.ownership.tell_offline(worker.pool, key)
                continue
            await reclaim(service, key, f"worker {worker.name} went offline")


async def expire_leases(service: Scheduler) -> None:
    """Un-acknowledged dispatches go back to SCHEDULED when their lease runs out."""
    while True:
        now = datetime.now(timezone.utc)
        async with service.db.reading() as db:
            expired = await run_store.expired_leases(db, now)
            upcoming = await run_store.next_lease_expiry(db)
        for run in expired:
            if not service.dispatcher.owns(run.pool):  # its owner expires it
                continue
            session = service.dispatcher.sessions.get(run.worker or "")
            if session is not None and not session.closed and session.acked.get(run.id) == run.lease:
                continue  # its worker took it; the database missed the Ack, which is written again
            with contextlib.suppress(ShiftbossError):
                await service.change_state(
                    run.id, states.SCHEDULED, lease=run.lease, message="the worker did not acknowledge it in time"
                )
        wait = service.settings.lease_seconds if upcoming is None else (upcoming - now).total_seconds()
        await asyncio.sleep(min(max(wait, 0.05), service.settings.lease_seconds))


async def create_scheduled_runs(service: Scheduler) -> None:
    """Create each deployment's runs ahead (Prefect's rule: see schedules.upcoming), once per schedule slot."""
    settings = service.settings
    ahead = schedules.Ahead(
        settings.schedule_min_runs, settings.schedule_max_runs, settings.schedule_horizon_seconds, settings.schedule_max_seconds
    )
    await service.ready.wait()
    while True:
        service.schedules_due.clear()
        now = datetime.now(timezone.utc)
        async with service.db.reading() as db:
            rows = await deployments.list_all(db)
        for deployment in rows:
            slots = deployments.due_slots(deployment, now, ahead)
            keys = [deployments.slot_key(s, m) for s, m in slots]
            async with service.db.reading() as db:
                done = await run_store.existing_slots(db, keys)
            for (schedule, moment), key in zip(slots, keys):
                if key in done:
                    continue
                try:
                    await service.create_run(deployment.name, start=moment, slot=key)
                except IntegrityError:
                    pass  # another replica made it first
                except ShiftbossError as exc:
                    log.warning("schedule of deployment %s could not create a run: %s", deployment.name, exc)
                    break
        period = max(1.0, min(60.0, service.settings.schedule_horizon_seconds / 4))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(service.schedules_due.wait(), period)


async def flush_beats(service: Scheduler) -> None:
    period = max(0.05, min(1.0, service.settings.heartbeat_seconds / 3))
    while True:
        await asyncio.sleep(period)
        await service.stream.flush()
