"""What the scheduler tells of runs without changing them: one run and its history, lists,
previews of what a pool or queue will run, the runs that go next, why a run waits, and a
pool's usage. Rows come from the store (runs.py); the order and the reasons come from the
admission state the engine holds."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

from shiftboss._wire import to_timestamp
from shiftboss.errors import InvalidArgument, NotFound
from shiftboss.services.scheduler import deployments, retries, states
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler.dispatch import epoch
from shiftboss.services.scheduler.models import FlowRunRow, now_utc
from shiftboss.v1 import pools_pb2, scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

#: Most runs one list returns.
MAX_LIST = 1000


async def read(engine: Scheduler, run_id: str) -> scheduler_pb2.FlowRun:
    """One run, with its history."""
    async with engine.db.reading() as session:
        run = await run_store.get(session, run_id)
        return engine.to_proto(run, await run_store.history(session, run))


async def search(engine: Scheduler, request: scheduler_pb2.ListFlowRunsRequest) -> list[scheduler_pb2.FlowRun]:
    """The runs a list asks for; LATE is shown, not stored, so it is found among the SCHEDULED."""
    wanted = [scheduler_pb2.RunState.Name(v) for v in request.state]
    stored = sorted({states.SCHEDULED if s == states.LATE else s for s in wanted})
    async with engine.db.reading() as session:
        # The deployment's runs; once it is deleted, the runs that keep its name.
        deployment_id = None
        if request.deployment:
            with contextlib.suppress(NotFound):
                deployment_id = (await deployments.get(session, request.deployment)).id
        rows = await run_store.search(
            session,
            pool=request.pool,
            queue=request.queue,
            stored_states=stored,
            deployment_id=deployment_id,
            deployment=request.deployment if deployment_id is None else "",
            since=engine.moment("scheduled_after", request.scheduled_after),
            until=engine.moment("scheduled_before", request.scheduled_before),
            limit=min(request.limit or 200, MAX_LIST),
            offset=request.offset,
        )
        if not rows and request.deployment and deployment_id is None and not request.offset:
            raise NotFound(f"deployment {request.deployment!r} not found", field="deployment")
    replies = [engine.to_proto(r) for r in rows]
    if wanted:
        names = set(wanted)
        replies = [r for r in replies if scheduler_pb2.RunState.Name(r.state) in names]
    return replies


async def upcoming(engine: Scheduler, pool: str, queue: str, hours: float) -> list[scheduler_pb2.FlowRun]:
    """The runs due within `hours` (1 when 0), in the order the waterfall releases them."""
    if hours < 0:
        raise InvalidArgument(f"hours: must not be negative, got {hours:g}", field="hours")
    await engine.check_queue(pool, queue) if queue else await engine.call(engine.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
    until = now_utc() + timedelta(hours=hours or 1)
    async with engine.db.reading() as session:
        rows = await run_store.search(
            session, pool=pool, queue=queue, stored_states=[states.SCHEDULED], until=until, limit=MAX_LIST, soonest_first=True
        )
    return [engine.to_proto(r) for r in engine.waterfall_order(pool, rows)]


async def waiting(engine: Scheduler, pool: str, queue: str) -> list[scheduler_pb2.FlowRun]:
    """A queue's runs waiting to go out, soonest first."""
    await engine.check_queue(pool, queue)
    async with engine.db.reading() as session:
        rows = await run_store.search(
            session, pool=pool, queue=queue, stored_states=[states.SCHEDULED], limit=MAX_LIST, soonest_first=True
        )
    return [engine.to_proto(r) for r in rows]


async def check_next(engine: Scheduler, request: scheduler_pb2.NextRunsRequest) -> float:
    """A NextRuns request checked, before it goes to the pool's owner; its prefetch."""
    if request.limit < 0:
        raise InvalidArgument(f"limit: must not be negative, got {request.limit}", field="limit")
    prefetch = request.prefetch_seconds if request.HasField("prefetch_seconds") else engine.settings.prefetch_seconds
    if prefetch < 0:
        raise InvalidArgument(f"prefetch_seconds: must not be negative, got {prefetch:g}", field="prefetch_seconds")
    if engine.dispatcher.pools.get(request.pool) is not None and all(
        engine.dispatcher.knows_queue(request.pool, queue) for queue in request.queues
    ):
        return prefetch  # the pool and its queues, as this replica dispatches them: no call to PoolService
    await engine.call(engine.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=request.pool))
    for queue in request.queues:
        await engine.check_queue(request.pool, queue)
    return prefetch


async def next_runs(engine: Scheduler, pool: str, queues: list[str], prefetch: float, limit: int) -> list[scheduler_pb2.FlowRun]:
    """The runs the pool's next admissions release, in that order (at most `limit`, all when 0)."""
    await engine.ready.wait()
    runtime = engine.dispatcher.pools.get(pool)
    if runtime is None:
        return []
    # A look, not a trial admission on a copy: it costs the runs it returns, not the pool's size.
    keys = runtime.state.peek(epoch(now_utc()), prefetch, queues or None, min(limit or MAX_LIST, MAX_LIST))
    async with engine.db.reading() as session:
        rows = {r.seq: r for r in await run_store.by_seq(session, keys)}
    return [engine.to_proto(rows[k]) for k in keys if k in rows]


def explain(engine: Scheduler, run: FlowRunRow) -> scheduler_pb2.Explanation:
    """Why a run has not gone out, as the admission state that holds it sees it."""
    reply = scheduler_pb2.Explanation(id=run.id, state=engine.to_proto(run).state, pool=run.pool, queue=run.queue)
    runtime = engine.dispatcher.pools.get(run.pool)
    if run.state in states.TERMINAL:
        reply.blocker, reply.message = "finished", f"the run ended {run.state}"
        return reply
    if run.state == states.CANCELLING:
        reply.blocker = "cancelling"
        reply.message = f"being cancelled: its slot is free, and worker {run.worker or '?'} is stopping it"
        return reply
    if runtime is None or run.seq not in runtime.state:
        reply.blocker, reply.message = "unknown", "the scheduler does not hold this run"
        return reply
    explained = runtime.state.explain(run.seq, epoch(now_utc()), engine.settings.prefetch_seconds)
    reply.queue_position = explained.queue_position
    reply.pool_position = explained.pool_position
    reply.blocker, reply.message = explained.blocker, explained.message
    if explained.blocker == "none" and not engine.dispatcher.serves(run.pool, run.queue):
        reply.blocker = "no_worker"
        reply.message = f"no connected worker serves queue {run.queue!r} of work pool {run.pool!r}"
    if run.state_name == retries.AWAITING_RETRY:
        reply.message = f"{retries.describe(run)}; {reply.message}"
    return reply


async def usage(engine: Scheduler, pool: str, queue: str) -> scheduler_pb2.PoolUsage:
    """A pool's (or one of its queues') runs in flight and waiting, late, its deployments,
    and when it last dispatched."""
    async with engine.db.reading() as session:
        in_flight, waiting_ = await run_store.usage(session, pool, queue)
        users = await deployments.list_all(session, pool)
        late, served = await run_store.health(session, pool, queue, now_utc(), engine.settings.late_seconds)
    names = [d.name for d in users if not queue or d.queue == queue]
    reply = scheduler_pb2.PoolUsage(in_flight=in_flight, waiting=waiting_, deployments=names, late=late)
    if served is not None:
        reply.last_dispatched.CopyFrom(to_timestamp(served))
    return reply
