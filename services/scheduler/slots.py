"""Who holds the slots of a work pool or a work queue: its runs PENDING or RUNNING (as
Prefect counts them for work pools), the longest held first, with the limit they count
against (PoolService's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.v1 import pools_pb2, scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

#: Most holders listed (a limit above this is unusual; `occupied` still counts them all).
MAX_LISTED = 1000


async def holders(service: Scheduler, pool: str, queue: str = "") -> scheduler_pb2.Slots:
    """NOT_FOUND for a pool or queue that does not exist, as its read would say."""
    if queue:
        owner = await service.call(service.pools.GetWorkQueue, pools_pb2.WorkQueueRef(name=queue, pool=pool))
    else:
        owner = await service.call(service.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
    async with service.db.reading() as session:
        rows = await run_store.search(
            session, pool=pool, queue=queue, stored_states=sorted(states.OCCUPYING), limit=MAX_LISTED, soonest_first=True
        )
        occupied, _ = await run_store.usage(session, pool, queue, counted=states.OCCUPYING)
    rows.sort(key=lambda run: (run_store.as_utc(run.dispatched or run.created), run.seq))
    reply = scheduler_pb2.Slots(flow_runs=[service.to_proto(run) for run in rows], occupied=occupied)
    if owner.HasField("concurrency_limit"):
        reply.limit = owner.concurrency_limit
    return reply
