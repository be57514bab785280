"""What PoolService asks the scheduler, which holds the runs and deployments: whether a pool
or queue is still in use, a queue's health, and following a queue's new name.

A pool service whose scheduler address runs no scheduler (UNIMPLEMENTED) has no runs or
deployments anywhere: nothing is in use, there is no health to show, a rename is free."""

from __future__ import annotations

import logging
from typing import Any

from shiftboss.errors import FailedPrecondition, ShiftbossError, Unimplemented
from shiftboss.v1 import pools_pb2, scheduler_pb2, scheduler_pb2_grpc

log = logging.getLogger("shiftboss.pools")


class SchedulerPeer:
    def __init__(self, peers: Any) -> None:
        self.peers = peers

    @property
    def _stub(self) -> scheduler_pb2_grpc.SchedulerServiceStub:
        return self.peers.stub("scheduler", scheduler_pb2_grpc.SchedulerServiceStub)

    async def _usage(self, pool: str, queue: str, timeout: float | None = None) -> scheduler_pb2.PoolUsage | None:
        try:
            return await self.peers.call(self._stub.GetPoolUsage, scheduler_pb2.PoolUsageRequest(pool=pool, queue=queue), timeout)
        except Unimplemented:
            return None

    async def refuse_if_used(self, pool: str, queue: str = "") -> None:
        """FAILED_PRECONDITION while runs or deployments still refer to the pool or queue."""
        usage = await self._usage(pool, queue)
        if usage is None:
            return
        what = f"work queue {queue!r} of work pool {pool!r}" if queue else f"work pool {pool!r}"
        if usage.in_flight:
            raise FailedPrecondition(
                f"name: {what} has {usage.in_flight} runs in flight; cancel them or let them finish first", field="name"
            )
        if usage.deployments:
            names = ", ".join(repr(d) for d in usage.deployments[:5]) + (" …" if len(usage.deployments) > 5 else "")
            raise FailedPrecondition(
                f"name: {what} is used by deployments {names}; move or delete them first", field="name"
            )
        if usage.waiting:
            raise FailedPrecondition(f"name: {what} has {usage.waiting} scheduled runs; cancel them first", field="name")

    async def with_health(self, reply: pools_pb2.WorkQueue) -> pools_pb2.WorkQueue:
        """The queue with its late runs and when a run was last sent (as Prefect's work queue
        status shows them); without them when the scheduler cannot be reached."""
        try:
            usage = await self._usage(reply.pool, reply.name, timeout=5)
        except ShiftbossError as exc:
            log.warning("health of work queue %s/%s unavailable: %s", reply.pool, reply.name, exc)
            return reply
        if usage is not None:
            reply.late_runs = usage.late
            if usage.HasField("last_dispatched"):
                reply.last_served.CopyFrom(usage.last_dispatched)
        return reply

    async def rename_queue(self, pool: str, name: str, new_name: str) -> None:
        """The queue's deployments, runs and the scheduler's admission state take its new name."""
        request = scheduler_pb2.RenameWorkQueueRequest(pool=pool, name=name, new_name=new_name)
        try:
            await self.peers.call(self._stub.RenameWorkQueue, request)
        except Unimplemented:
            pass
