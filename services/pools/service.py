"""PoolService's gRPC servicer: convert the request, call the domain, convert the reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from grpc import aio

from shiftboss.errors import InvalidArgument, ShiftbossError
from shiftboss._wire import from_struct
from shiftboss.services.broadcast import Broadcaster
from shiftboss.services import paging
from shiftboss.services import notify
from shiftboss.services.db import open_database, release_database
from shiftboss.services.pools import domain
from shiftboss.services.pools._scheduler import SchedulerPeer
from shiftboss.services.names import validate_name
from shiftboss.services.pools.wire import optional, pool_to_proto, queue_to_proto
from shiftboss.v1 import (
    heartbeats_pb2,
    heartbeats_pb2_grpc,
    pools_pb2,
    pools_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
)

log = logging.getLogger("shiftboss.pools")

Event = pools_pb2.WatchEvent
#: The channel on which the servers sharing a PostgreSQL database tell each other of changes.
CHANNEL = "shiftboss_pools"


class PoolService(pools_pb2_grpc.PoolServiceServicer):
    name = "pools"
    full_name = pools_pb2.DESCRIPTOR.services_by_name["PoolService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.db = open_database(mesh.settings.database_url_for(self.name))
        self.events: Broadcaster[pools_pb2.WatchEvent] = Broadcaster()
        #: Changes made by the other servers on this PostgreSQL database (notify.py).
        self.listener: notify.Listener | None = None
        self.origin = notify.new_origin()
        #: The scheduler, which holds the runs and deployments that name pools and queues.
        self.scheduler = SchedulerPeer(mesh.peers)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    def register(self, server: aio.Server) -> None:
        pools_pb2_grpc.add_PoolServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.db.upgrade(self.name)
        if not self.db.is_sqlite:
            self.listener = notify.listener_for(self.db.url)
            await self.listener.listen(CHANNEL, self._noticed)

    def closing(self) -> None:
        self.events.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.listener is not None:
            await notify.release(self.listener)
        await release_database(self.db)

    # ------------------------------------------------------------ other servers' changes

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, kind: int, pool: str, queue: str, renamed_from: str = "") -> None:
        notice = {"kind": kind, "pool": pool, "queue": queue, "renamed_from": renamed_from}
        try:
            await notify.notify(self.db, CHANNEL, notice, self.origin)
        except Exception as exc:  # noqa: BLE001 - the others see the change at their next start
            log.warning("change of work pool %s not told to the other servers: %s", pool, exc)

    def _noticed(self, notice: dict[str, Any]) -> None:
        if notice.get("origin") != self.origin:
            self._spawn(self._replay(notice))

    async def _replay(self, notice: dict[str, Any]) -> None:
        """A change another server made, published here as if made here: read as it is now
        (a notice carries names only; the events' `updated` stamps order them)."""
        kind, name, queue = int(notice.get("kind", 0)), str(notice.get("pool", "")), str(notice.get("queue", ""))
        if kind == Event.DELETED:
            self._publish(kind, pools_pb2.WorkPool(name=name), pools_pb2.WorkQueue(name=queue) if queue else None)
            return
        async with self.db.reading() as session:
            try:
                row = await domain.get_pool(session, name)
            except ShiftbossError:
                return  # deleted meanwhile: its own notice follows
            message = pool_to_proto(row)
            queue_message = None
            if queue:
                found = next((q for q in row.queues if q.name == queue), None)
                if found is None:
                    return
                queue_message = queue_to_proto(found, name)
        self._publish(kind, message, queue_message, str(notice.get("renamed_from") or ""))

    # ------------------------------------------------------------ helpers

    @property
    def _templates(self) -> templates_pb2_grpc.TemplateServiceStub:
        return self.mesh.peers.stub("templates", templates_pb2_grpc.TemplateServiceStub)

    async def _checked_template(self, request: Any, pool_type: str) -> dict[str, Any] | None:
        """The request's template once TemplateService accepts it; None when none was sent."""
        if not request.HasField("base_job_template"):
            return None
        template = request.base_job_template
        await self.mesh.peers.call(self._templates.ValidateTemplate, templates_pb2.ValidateTemplateRequest(template=template))
        return from_struct(template)

    async def _default_template(self, pool_type: str) -> dict[str, Any]:
        reply = await self.mesh.peers.call(
            self._templates.GetDefaultBaseJobTemplate, templates_pb2.GetDefaultBaseJobTemplateRequest(type=pool_type)
        )
        return from_struct(reply.template)

    async def _online_workers(self) -> dict[str, int]:
        """Online workers per pool, from HeartbeatService; none when it cannot be reached."""
        stub = self.mesh.peers.stub("heartbeats", heartbeats_pb2_grpc.HeartbeatServiceStub)
        try:
            reply = await self.mesh.peers.call(stub.CountOnline, heartbeats_pb2.CountOnlineRequest(), timeout=5)
        except ShiftbossError as exc:
            log.warning("worker counts unavailable, pools show NOT_READY: %s", exc)
            return {}
        return dict(reply.online)

    def _pool_event(
        self, kind: int, pool: pools_pb2.WorkPool, queue: pools_pb2.WorkQueue | None = None, renamed_from: str = ""
    ) -> None:
        self._publish(kind, pool, queue, renamed_from)
        if self.listener is not None:  # and to the other servers on this database, within milliseconds
            self._spawn(self._tell(kind, pool.name, queue.name if queue is not None else "", renamed_from))

    def _publish(
        self, kind: int, pool: pools_pb2.WorkPool, queue: pools_pb2.WorkQueue | None = None, renamed_from: str = ""
    ) -> None:
        event = Event(kind=kind, pool=pool, queue=queue, renamed_from=renamed_from)
        event.at.GetCurrentTime()
        self.events.publish(event)

    async def _pool_change(self, name: str, **changes: Any) -> pools_pb2.WorkPool:
        async with self.db.transaction() as session:
            reply = pool_to_proto(await domain.update_pool(session, name, **changes))
        self._pool_event(Event.UPDATED, reply)
        return reply

    async def _queue_change(self, request: Any, renamed_from: str = "", **changes: Any) -> pools_pb2.WorkQueue:
        async with self.db.transaction() as session:
            if renamed_from:
                await domain.rename_followed(session, request.pool, request.name)
            queue = await domain.update_queue(session, request.pool, request.name, **changes)
            pool = pool_to_proto(queue.pool)
            siblings = [queue_to_proto(q, request.pool) for q in queue.pool.queues if q is not queue]
            reply = queue_to_proto(queue, request.pool)
        self._pool_event(Event.UPDATED, pool, reply, renamed_from)
        for sibling in siblings:  # priorities may have shifted
            self._pool_event(Event.UPDATED, pool, sibling)
        return reply

    async def _rename_queue(self, request: pools_pb2.UpdateWorkQueueRequest, **changes: Any) -> pools_pb2.WorkQueue:
        """Rename a queue, then have the scheduler move its deployments and runs (ended ones
        too) and its admission state to the new name, then apply the other changes.

        The two services keep their own databases, so this is two transactions: the first
        remembers the old name on the queue (`renamed_from`), which the scheduler's view of
        pools carries, so a server stopped between them still has the scheduler follow the
        rename when it is back. When the scheduler refuses it, the rename is undone."""
        old, new = request.name, request.new_name
        domain.validate_priority(changes.get("priority"))
        if "concurrency_limit" in changes:
            domain.validate_limit("concurrency_limit", changes["concurrency_limit"])
        async with self.db.transaction() as session:
            await domain.update_queue(session, request.pool, old, new_name=new)
        try:
            await self.scheduler.rename_queue(request.pool, old, new)
        except ShiftbossError:
            with contextlib.suppress(ShiftbossError):  # whatever the scheduler did, it undoes
                await self.scheduler.rename_queue(request.pool, new, old)
            async with self.db.transaction() as session:
                queue = await domain.update_queue(session, request.pool, new, new_name=old)
                queue.renamed_from = None
            raise
        renamed = pools_pb2.UpdateWorkQueueRequest(name=new, pool=request.pool)
        return await self._queue_change(renamed, renamed_from=old, **changes)

    # ------------------------------------------------------------ pools

    async def CreateWorkPool(self, request: pools_pb2.CreateWorkPoolRequest, context: Any) -> pools_pb2.WorkPool:
        validate_name("name", request.name)
        domain.validate_type(request.type)
        template = await self._checked_template(request, request.type) or await self._default_template(request.type)
        async with self.db.transaction() as session:
            pool = await domain.create_pool(
                session,
                name=request.name,
                type=request.type,
                description=request.description,
                paused=request.paused,
                concurrency_limit=optional(request, "concurrency_limit"),
                base_job_template=template,
                worker_queue_limit=request.worker_queue_limit,
                allowed_entrypoints=list(request.allowed_entrypoints),
            )
            reply = pool_to_proto(pool)
            default = queue_to_proto(pool.queues[0], pool.name)
        self._pool_event(Event.CREATED, reply)
        self._pool_event(Event.CREATED, reply, default)
        return reply

    async def GetWorkPool(self, request: pools_pb2.WorkPoolRef, context: Any) -> pools_pb2.WorkPool:
        async with self.db.reading() as session:
            pool = await domain.get_pool(session, request.name)
        online = await self._online_workers()
        return pool_to_proto(pool, online.get(pool.name, 0))

    async def ListWorkPools(self, request: pools_pb2.ListWorkPoolsRequest, context: Any) -> pools_pb2.ListWorkPoolsResponse:
        async with self.db.reading() as session:
            pools = paging.page(await domain.list_pools(session), request.limit, request.offset)
        online = await self._online_workers()
        return pools_pb2.ListWorkPoolsResponse(work_pools=[pool_to_proto(p, online.get(p.name, 0)) for p in pools])

    async def UpdateWorkPool(self, request: pools_pb2.UpdateWorkPoolRequest, context: Any) -> pools_pb2.WorkPool:
        changes: dict[str, Any] = {
            "description": optional(request, "description"),
            "worker_queue_limit": optional(request, "worker_queue_limit"),
        }
        if request.allowed_entrypoints and request.clear_allowed_entrypoints:
            raise InvalidArgument(
                "allowed_entrypoints: give --allow-entrypoint or --clear-allowed-entrypoints, not both", field="allowed_entrypoints"
            )
        if request.allowed_entrypoints or request.clear_allowed_entrypoints:
            changes["allowed_entrypoints"] = list(request.allowed_entrypoints)
        if request.HasField("concurrency_limit"):
            changes["concurrency_limit"] = domain.validate_limit("concurrency_limit", request.concurrency_limit)
        if request.HasField("base_job_template"):
            async with self.db.reading() as session:
                pool_type = (await domain.get_pool(session, request.name)).type
            changes["base_job_template"] = await self._checked_template(request, pool_type)
        return await self._pool_change(request.name, **changes)

    async def PauseWorkPool(self, request: pools_pb2.WorkPoolRef, context: Any) -> pools_pb2.WorkPool:
        return await self._pool_change(request.name, paused=True)

    async def ResumeWorkPool(self, request: pools_pb2.WorkPoolRef, context: Any) -> pools_pb2.WorkPool:
        return await self._pool_change(request.name, paused=False)

    async def SetWorkPoolConcurrencyLimit(
        self, request: pools_pb2.SetWorkPoolConcurrencyLimitRequest, context: Any
    ) -> pools_pb2.WorkPool:
        return await self._pool_change(request.name, concurrency_limit=request.concurrency_limit)

    async def ClearWorkPoolConcurrencyLimit(self, request: pools_pb2.WorkPoolRef, context: Any) -> pools_pb2.WorkPool:
        return await self._pool_change(request.name, concurrency_limit=None)

    async def DeleteWorkPool(self, request: pools_pb2.WorkPoolRef, context: Any) -> pools_pb2.DeleteResponse:
        await self.scheduler.refuse_if_used(request.name)
        async with self.db.transaction() as session:
            reply = pool_to_proto(await domain.delete_pool(session, request.name))
        self._pool_event(Event.DELETED, reply)
        return pools_pb2.DeleteResponse()

    # ------------------------------------------------------------ queues

    async def CreateWorkQueue(self, request: pools_pb2.CreateWorkQueueRequest, context: Any) -> pools_pb2.WorkQueue:
        async with self.db.transaction() as session:
            queue = await domain.create_queue(
                session,
                pool_name=request.pool,
                name=request.name,
                priority=optional(request, "priority"),
                concurrency_limit=optional(request, "concurrency_limit"),
                description=request.description,
                paused=request.paused,
            )
            pool = pool_to_proto(queue.pool)
            queues = [queue_to_proto(q, request.pool) for q in queue.pool.queues]
            reply = queue_to_proto(queue, request.pool)
        for each in queues:
            self._pool_event(Event.CREATED if each.name == reply.name else Event.UPDATED, pool, each)
        return reply

    async def GetWorkQueue(self, request: pools_pb2.WorkQueueRef, context: Any) -> pools_pb2.WorkQueue:
        async with self.db.reading() as session:
            reply = queue_to_proto(await domain.get_queue(session, request.pool, request.name), request.pool)
        return reply if request.without_health else await self.scheduler.with_health(reply)

    async def ListWorkQueues(
        self, request: pools_pb2.ListWorkQueuesRequest, context: Any
    ) -> pools_pb2.ListWorkQueuesResponse:
        async with self.db.reading() as session:
            queues = paging.page(await domain.list_queues(session, request.pool), request.limit, request.offset)
            now = datetime.now(timezone.utc)
            return pools_pb2.ListWorkQueuesResponse(work_queues=[queue_to_proto(q, request.pool, now) for q in queues])

    async def UpdateWorkQueue(self, request: pools_pb2.UpdateWorkQueueRequest, context: Any) -> pools_pb2.WorkQueue:
        changes: dict[str, Any] = {
            "priority": optional(request, "priority"),
            "description": optional(request, "description"),
        }
        if request.HasField("concurrency_limit"):
            changes["concurrency_limit"] = request.concurrency_limit
        if request.HasField("new_name") and request.new_name != request.name:
            return await self._rename_queue(request, **changes)
        return await self._queue_change(request, **changes)

    async def PauseWorkQueue(self, request: pools_pb2.WorkQueueRef, context: Any) -> pools_pb2.WorkQueue:
        return await self._queue_change(request, paused=True)

    async def ResumeWorkQueue(self, request: pools_pb2.WorkQueueRef, context: Any) -> pools_pb2.WorkQueue:
        return await self._queue_change(request, paused=False)

    async def SetWorkQueueConcurrencyLimit(
        self, request: pools_pb2.SetWorkQueueConcurrencyLimitRequest, context: Any
    ) -> pools_pb2.WorkQueue:
        return await self._queue_change(request, concurrency_limit=request.concurrency_limit)

    async def ClearWorkQueueConcurrencyLimit(self, request: pools_pb2.WorkQueueRef, context: Any) -> pools_pb2.WorkQueue:
        return await self._queue_change(request, concurrency_limit=None)

    async def DeleteWorkQueue(self, request: pools_pb2.WorkQueueRef, context: Any) -> pools_pb2.DeleteResponse:
        async with self.db.reading() as session:
            is_default = (await domain.get_queue(session, request.pool, request.name)).is_default
        if not is_default:  # that one is refused for its own reason below
            await self.scheduler.refuse_if_used(request.pool, request.name)
        async with self.db.transaction() as session:
            queue = await domain.delete_queue(session, request.pool, request.name)
            reply = queue_to_proto(queue, request.pool)
            pool = pool_to_proto(queue.pool) if queue.pool is not None else pools_pb2.WorkPool(name=request.pool)
        self._pool_event(Event.DELETED, pool, reply)
        return pools_pb2.DeleteResponse()

    async def EnsureWorkQueues(
        self, request: pools_pb2.EnsureWorkQueuesRequest, context: Any
    ) -> pools_pb2.ListWorkQueuesResponse:
        async with self.db.transaction() as session:
            queues, created = await domain.ensure_queues(
                session, request.pool, list(request.names), worker_key=request.worker_key
            )
            replies = [queue_to_proto(q, request.pool) for q in queues]
        if created:  # the pool as it is now, for the events: read once, only when it changed
            async with self.db.reading() as session:
                pool = pool_to_proto(await domain.get_pool(session, request.pool, field="pool"))
            for reply in replies:
                if reply.name in created:
                    self._pool_event(Event.CREATED, pool, reply)
        return pools_pb2.ListWorkQueuesResponse(work_queues=replies)

    async def MarkPolled(self, request: pools_pb2.MarkPolledRequest, context: Any) -> pools_pb2.MarkPolledResponse:
        async with self.db.transaction() as session:
            await domain.mark_polled(session, request.pool, list(request.names), datetime.now(timezone.utc))
        return pools_pb2.MarkPolledResponse()

    async def Watch(self, request: pools_pb2.WatchRequest, context: Any) -> AsyncIterator[pools_pb2.WatchEvent]:
        subscription = self.events.subscribe(lambda e: not request.pool or e.pool.name == request.pool)
        try:
            initial = await self._initial_state(request)
        except BaseException:
            subscription.cancel()
            raise
        for event in initial:
            yield event
        yield Event(kind=Event.SYNCED)
        async for event in subscription.events():
            yield event

    async def _initial_state(self, request: pools_pb2.WatchRequest) -> list[pools_pb2.WatchEvent]:
        async with self.db.reading() as session:
            if request.pool:
                pools = [await domain.get_pool(session, request.pool, field="pool")]
            else:
                pools = await domain.list_pools(session) if request.initial else []
            initial = []
            for pool in pools if request.initial else []:
                message = pool_to_proto(pool)
                initial.append(Event(kind=Event.CREATED, pool=message))
                initial += [
                    Event(kind=Event.CREATED, pool=message, queue=queue_to_proto(q, pool.name), renamed_from=q.renamed_from or "")
                    for q in pool.queues
                ]
        return initial


def build(mesh: Any) -> PoolService:
    return PoolService(mesh)
