"""Deployment status, as Prefect's: READY when a worker served the deployment's queue
within the last minute, NOT_READY otherwise. PoolService knows when queues were served
(their status); one call per pool answers for all its deployments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shiftboss.errors import NotFound
from shiftboss.v1 import common_pb2, pools_pb2, scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler


async def with_status(service: Scheduler, replies: list[scheduler_pb2.Deployment]) -> list[scheduler_pb2.Deployment]:
    served: set[tuple[str, str]] = set()
    for pool in sorted({reply.pool for reply in replies}):
        try:
            listed = await service.call(service.pools.ListWorkQueues, pools_pb2.ListWorkQueuesRequest(pool=pool))
        except NotFound:  # its pool is gone: nothing serves it
            continue
        served |= {(pool, queue.name) for queue in listed.work_queues if queue.status == common_pb2.READY}
    for reply in replies:
        reply.status = common_pb2.READY if (reply.pool, reply.queue) in served else common_pb2.NOT_READY
    return replies
