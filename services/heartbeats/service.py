"""HeartbeatService's gRPC servicer and its expiry timer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from grpc import aio

from shiftboss._wire import from_timestamp, to_timestamp
from shiftboss.errors import InvalidArgument, ShiftbossError, Unavailable
from shiftboss.services.broadcast import Broadcaster
from shiftboss.services.db_errors import database_error
from shiftboss.services.db import open_database, release_database
from shiftboss.services.heartbeats import domain
from shiftboss.services.heartbeats.models import WorkerRow
from shiftboss.services.heartbeats.telemetry import observe
from shiftboss.v1 import heartbeats_pb2, heartbeats_pb2_grpc

log = logging.getLogger("shiftboss.heartbeats")


def worker_to_proto(worker: WorkerRow) -> heartbeats_pb2.Worker:
    return heartbeats_pb2.Worker(
        id=worker.id,
        name=worker.name,
        pool=worker.pool,
        type=worker.type,
        queues=list(worker.queues),
        status=heartbeats_pb2.WorkerStatus.Value(worker.status),
        last_heartbeat=to_timestamp(worker.last_heartbeat),
        created=to_timestamp(worker.created),
        in_flight=worker.in_flight,
        limit=worker.limit,
        heartbeat_seconds=worker.heartbeat_seconds,
    )


def beat_from_proto(beat: heartbeats_pb2.WorkerBeat, now: datetime) -> domain.Beat:
    try:
        at = from_timestamp(beat.at) if beat.HasField("at") else now
    except (ValueError, OverflowError):
        raise InvalidArgument("beats.at: not a valid time", field="beats.at") from None
    return domain.Beat(
        name=beat.name,
        pool=beat.pool,
        type=beat.type,
        queues=list(beat.queues),
        in_flight=beat.in_flight,
        limit=beat.limit,
        heartbeat_seconds=beat.heartbeat_seconds,
        at=at,
        gone=beat.gone,
    )


class HeartbeatService(heartbeats_pb2_grpc.HeartbeatServiceServicer):
    name = "heartbeats"
    full_name = heartbeats_pb2.DESCRIPTOR.services_by_name["HeartbeatService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.db = open_database(mesh.settings.database_url_for(self.name))
        self.events: Broadcaster[heartbeats_pb2.WorkerEvent] = Broadcaster()
        self._wake = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.observer = observe(self)

    def register(self, server: aio.Server) -> None:
        heartbeats_pb2_grpc.add_HeartbeatServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.db.upgrade(self.name)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="heartbeats-sweeper")

    def closing(self) -> None:
        self.events.close()

    async def stop(self) -> None:
        if self.observer is not None:
            self.observer.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await release_database(self.db)

    def _publish(self, workers: list[WorkerRow]) -> None:
        for worker in workers:
            self.events.publish(heartbeats_pb2.WorkerEvent(worker=worker_to_proto(worker)))

    async def _sweep_forever(self) -> None:
        """Sleep until the earliest worker deadline, then mark the late ones OFFLINE."""
        while True:
            try:
                async with self.db.transaction() as session:
                    gone = await domain.expire(session, datetime.now(timezone.utc))
                    upcoming = await domain.next_deadline(session)
                for worker in gone:
                    log.info("worker %s of pool %s is OFFLINE", worker.name, worker.pool)
                self._publish(gone)
            except Exception:  # the timer must survive a database hiccup
                log.exception("expiring workers failed")
                upcoming = None
            self._wake.clear()
            wait = 5.0 if upcoming is None else max(0.0, (upcoming - datetime.now(timezone.utc)).total_seconds())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 60.0) + 0.01)

    async def Beat(self, request: heartbeats_pb2.BeatRequest, context: Any) -> heartbeats_pb2.BeatResponse:
        """Beats of many workers (of any pools) in one transaction; a bad beat is refused
        alone and the others are recorded: checked first, then, should the database still
        refuse the batch, written one by one."""
        now = datetime.now(timezone.utc)
        reply = heartbeats_pb2.BeatResponse()
        beats: list[tuple[int, domain.Beat]] = []
        first: ShiftbossError | None = None
        for index, message in enumerate(request.beats):
            try:
                beat = beat_from_proto(message, now)
                domain.check_beat(beat)
            except ShiftbossError as exc:
                first = first or exc
                reply.refused.add(index=index, reason=exc.message)
                continue
            beats.append((index, beat))
        if first is not None and not beats:
            raise first  # nothing in the request stands: the request is refused
        try:
            changed = await self._record([beat for _, beat in beats])
        except Exception:
            changed = []
            for index, beat in beats:
                try:
                    changed += await self._record([beat])
                except Exception as exc:
                    error = database_error(exc)
                    if error is None or isinstance(error, Unavailable):
                        raise  # the database, not the beat: the caller keeps them all for later
                    reply.refused.add(index=index, reason=error.message)
        if changed:
            self._publish(changed)
            self._wake.set()
        return reply

    async def _record(self, beats: list[domain.Beat]) -> list[WorkerRow]:
        async with self.db.transaction() as session:
            return await domain.record(session, beats)

    async def ListWorkers(self, request: heartbeats_pb2.ListWorkersRequest, context: Any) -> heartbeats_pb2.ListWorkersResponse:
        async with self.db.reading() as session:
            workers = await domain.list_workers(session, request.pool, request.limit, request.offset)
            return heartbeats_pb2.ListWorkersResponse(workers=[worker_to_proto(w) for w in workers])

    async def DeleteWorker(self, request: heartbeats_pb2.WorkerRef, context: Any) -> heartbeats_pb2.DeleteWorkerResponse:
        async with self.db.transaction() as session:
            await domain.delete_worker(session, request.pool, request.name)
        return heartbeats_pb2.DeleteWorkerResponse()

    async def GetWorker(self, request: heartbeats_pb2.WorkerRef, context: Any) -> heartbeats_pb2.Worker:
        async with self.db.reading() as session:
            return worker_to_proto(await domain.get_worker(session, request.pool, request.name))

    async def CountOnline(self, request: heartbeats_pb2.CountOnlineRequest, context: Any) -> heartbeats_pb2.CountOnlineResponse:
        async with self.db.reading() as session:
            return heartbeats_pb2.CountOnlineResponse(online=await domain.count_online(session))

    async def WatchWorkers(
        self, request: heartbeats_pb2.WatchWorkersRequest, context: Any
    ) -> AsyncIterator[heartbeats_pb2.WorkerEvent]:
        async for event in self.events.subscribe().events():
            yield event


def build(mesh: Any) -> HeartbeatService:
    return HeartbeatService(mesh)
