"""The worker stream (SchedulerService.Connect): Hello, then a reader and a writer.

Every message a worker sends is idempotent under retry: a repeated Ack, Started or
Finished with the current lease is a no-op, and one with a stale lease is refused with
a Refused message instead of breaking the stream. A recorded Finished is answered with
Settled; outcomes not settled when a stream drops travel in the next Hello and are
recorded before anything is dispatched, so a finished run is never sent out again.
Started acknowledges its dispatch as an Ack would: a worker sends Ack only for a run it
takes now and starts later, and one that sends both is served the same.

What a worker sends is trusted no further than its stream's identity: Hello must come
within `hello_timeout_seconds` and pass the checks of a unary request (inbound.py); every
later message is checked on its own, and one touching a run of another pool, or a run not
leased to this worker, is refused without a word about that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from collections.abc import AsyncIterator

import grpc

from shiftboss._wire import from_timestamp, gather, to_timestamp
from shiftboss.errors import DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound, ResourceExhausted, ShiftbossError
from shiftboss.services.auth import on_revoked, require_pool, worker_key_name
from shiftboss.services.db_errors import database_error
from shiftboss.services.limits import MessageBudget
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.inbound import check_hello, check_log_line
from shiftboss.services.scheduler.models import FlowRunRow
from shiftboss.services.scheduler.outcomes import OutcomeWriter
from shiftboss.services.scheduler.ownership import OwnerSilent
from shiftboss.services.scheduler.sessions import WorkerSession, worker_key
from shiftboss.services.scheduler.wire import log_event
from shiftboss.v1 import heartbeats_pb2, pools_pb2, scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

log = logging.getLogger("shiftboss.scheduler")
Message = scheduler_pb2.SchedulerMessage
#: Most log lines one LogBatch may carry (the worker daemon sends at most 200).
MAX_LOG_LINES = 5_000
#: Runs a stream may say it took without finishing them, remembered (WorkerSession.acked).
MAX_ACKED = 10_000
#: What an idle stream is sent so its worker hears the server runs (Welcome.ping_seconds).
PING = Message(batch=scheduler_pb2.SchedulerBatch())


class Redirected(Exception):
    """The Hello's pool is dispatched by another replica: the worker is sent there."""

    def __init__(self, redirect: scheduler_pb2.Redirect) -> None:
        super().__init__(redirect.address)
        self.redirect = redirect


class StreamHandler:
    def __init__(self, service: Scheduler) -> None:
        self.service = service
        self.dispatcher = service.dispatcher
        self.outcomes = OutcomeWriter(service)
        #: Latest beat of each connected worker, flushed to HeartbeatService in batches.
        self.beats: dict[str, heartbeats_pb2.WorkerBeat] = {}
        #: Queues served per pool since the last flush (None: all of them).
        self.polled: dict[str, set[str] | None] = {}

    # ------------------------------------------------------------ connect

    async def connect(self, requests: Any, context: Any) -> AsyncIterator[scheduler_pb2.SchedulerMessage]:
        wait = self.service.settings.hello_timeout_seconds
        try:
            first = await asyncio.wait_for(anext(aiter(requests), None), wait)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"hello: no Hello within {wait:g}s of opening the stream", field="hello") from None
        if first is None or first.WhichOneof("kind") != "hello":
            raise InvalidArgument("hello: the first message on the stream must be Hello", field="hello")
        check_hello(first.hello, self.service.settings.max_document_bytes)
        await self.service.ready.wait()
        try:
            session, welcome = await self.hello(first.hello)
        except Redirected as moved:  # another replica dispatches the pool (ownership.py)
            yield Message(redirect=moved.redirect)
            return
        on_revoked(session.end)
        reader = asyncio.create_task(self.read(session, requests), name=f"stream-{session.key}")
        try:
            yield Message(welcome=welcome)
            if session.once:
                runtime = self.dispatcher.pools[session.pool]
                await self.dispatcher.admit_now(runtime, only=session)
                session.draining = True
                session.send(Message(drain=scheduler_pb2.Drain(reason="run-once: these are the runs due now")))
            outbox = session.outbox
            while True:
                message = await outbox.get()
                if message is not None and session.batches:
                    # One turn of the loop first, so what the same wake-up queues for this worker
                    # (an admission pass's dispatches, a commit's Settled) leaves in one write.
                    await asyncio.sleep(0)
                if message is not None and session.batches and not outbox.empty():
                    messages = [m for m in gather(message, outbox) if m is not PING]  # more than a ping to send
                    message = Message()
                    message.batch.messages.extend(messages)  # one copy each, into the message sent
                if message is None:
                    if session.failure is not None:
                        # Set, not raised: an abort after messages went out loses its status.
                        context.set_code(grpc.StatusCode[session.failure.code])
                        context.set_details(session.failure.message)
                    return
                session.last_sent = time.monotonic()
                yield message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            session.close()
            self.dispatcher.detach(session)
            self.beats.pop(session.key, None)
            if session.goodbye and session.key not in self.dispatcher.sessions:
                # It ended the stream on purpose (it is stopping): OFFLINE with the next flush
                # of beats (within a second), and whatever it still holds is settled as for a
                # lost worker, rather than three missed beats later.
                self.beat(session, gone=True)
                log.info("worker %s disconnected: it is stopping", session.key)
            else:
                log.info("worker %s disconnected", session.key)

    async def hello(self, hello: scheduler_pb2.Hello) -> tuple[WorkerSession, scheduler_pb2.Welcome]:
        """Settle what the Hello carries and attach the worker; the Hello's fields are
        checked already (inbound.check_hello)."""
        service = self.service
        pool = await self._pool_for(hello)
        queues: list[str] | None = None
        if hello.queues:
            api_key = worker_key_name()
            if api_key is None:  # a caller who may see every pool is told of a queue named in the wrong one
                await self._refuse_foreign_queues(hello)
            # A worker key may create queues only as far as the pool's setting allows.
            names = list(dict.fromkeys(hello.queues))
            request = pools_pb2.EnsureWorkQueuesRequest(pool=pool.name, names=names, worker_key=api_key or "")
            reply = await service.call(service.pools.EnsureWorkQueues, request)
            queues = [q.name for q in reply.work_queues]
        listed = await service.call(service.pools.ListWorkQueues, pools_pb2.ListWorkQueuesRequest(pool=pool.name))
        self.dispatcher.apply_pool(pool)
        for queue in listed.work_queues:
            self.dispatcher.apply_queue(pool, queue)
        key = worker_key(pool.name, hello.name)
        try:
            owner = await service.ownership.route(pool.name)
        except OwnerSilent as exc:
            owner, silent = "", exc.message  # the worker comes back here in a moment
        if owner is not None:
            # Beaten here meanwhile, so that a worker on its way to the owner stays ONLINE.
            self.beat(WorkerSession(key=key, id=key, name=hello.name, pool=pool.name, queues=queues, limit=hello.limit, prefetch=0.0))
            reason = f"work pool {pool.name!r} is dispatched by the scheduler replica at {owner}" if owner else silent
            log.info("worker %s: %s", key, reason)
            raise Redirected(service.ownership.redirect(owner, reason))
        session = WorkerSession(
            key=key,
            id=key,
            name=hello.name,
            pool=pool.name,
            queues=queues,
            limit=hello.limit,
            prefetch=hello.prefetch_seconds,
            once=hello.once,
            batches=hello.batches,
        )
        # Outcomes of runs that ended while the stream was down, recorded before anything is
        # dispatched, so a run that finished is never sent out again.
        await self.outcomes.settle(session, list(hello.finished))
        await self._reclaim_holdings(session, dict(hello.holding))
        self.dispatcher.attach(session)
        self.beat(session)
        try:  # ONLINE at once; should HeartbeatService not answer, the next flush sends the beat
            await self.flush()
        except ShiftbossError as exc:
            log.warning("heartbeats of worker %s not sent yet: %s", key, exc.message)
        log.info("worker %s connected (queues: %s, limit: %s)", key, ", ".join(queues or ["all"]), hello.limit or "none")
        welcome = scheduler_pb2.Welcome(
            worker_id=key,
            heartbeat_seconds=service.settings.heartbeat_seconds,
            queues=queues or [q.name for q in listed.work_queues],
            pool_type=pool.type,
            replicas=service.ownership.replicas,
            ping_seconds=self.ping_seconds if hello.batches else 0.0,
        )
        return session, welcome

    async def _pool_for(self, hello: scheduler_pb2.Hello) -> pools_pb2.WorkPool:
        require_pool(hello.pool)
        service = self.service
        try:
            pool = await service.call(service.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=hello.pool))
        except NotFound:
            if not hello.type:
                raise NotFound(
                    f"work pool {hello.pool!r} not found; start the worker with --type to create it", field="pool"
                ) from None
            key = worker_key_name()
            if key is not None:  # making pools is an admin's work, whatever key serves them
                raise NotFound(
                    f"work pool {hello.pool!r} not found; worker key '{key}' cannot create it: ask an admin to", field="pool"
                ) from None
            request = pools_pb2.CreateWorkPoolRequest(name=hello.pool, type=hello.type)
            if hello.HasField("base_job_template"):
                request.base_job_template.CopyFrom(hello.base_job_template)
            try:
                pool = await service.call(service.pools.CreateWorkPool, request)
            except ShiftbossError as exc:
                if exc.code != "ALREADY_EXISTS":
                    raise
                pool = await service.call(service.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=hello.pool))
        if hello.type and hello.type != pool.type:
            raise FailedPrecondition(
                f"type: a {hello.type!r} worker cannot serve work pool {pool.name!r} of type {pool.type!r}", field="type"
            )
        return pool

    async def _refuse_foreign_queues(self, hello: scheduler_pb2.Hello) -> None:
        """A queue missing here but present in another pool is a mistake, not a new queue.
        Never said to a worker key: it may not learn what other pools hold."""
        service = self.service
        here = await service.call(service.pools.ListWorkQueues, pools_pb2.ListWorkQueuesRequest(pool=hello.pool))
        missing = set(hello.queues) - {q.name for q in here.work_queues}
        if not missing:
            return
        everywhere = await service.call(service.pools.ListWorkPools, pools_pb2.ListWorkPoolsRequest())
        for other in everywhere.work_pools:
            if other.name != hello.pool:
                foreign = sorted(missing & set(other.queues) - {"default", other.default_queue})
                if foreign:
                    raise FailedPrecondition(
                        f"queues: {foreign[0]!r} is a queue of work pool {other.name!r}, not of {hello.pool!r}",
                        field="queues",
                    )

    async def _reclaim_holdings(self, session: WorkerSession, holding: dict[str, int]) -> None:
        """A reconnecting worker takes back the runs it still holds, if their leases are current."""
        async with self.service.db.reading() as db:
            held = await run_store.held_by(db, session.key)
        current = {run.id: run for run in held}
        for run_id, lease in holding.items():
            run = current.get(run_id)  # only this worker's runs: nothing is said of others
            if run is not None and run.lease == lease:
                session.held.add(run.seq)
                if run.state == states.PENDING and run.lease_expires is not None:
                    # It took the run, but its Ack went down with the server (a restart, the
                    # failover of a replica): the Hello says so, and is written as that Ack,
                    # so the lease does not lapse under a run that runs.
                    session.acked[run.id] = lease
                    self.outcomes.submit(session, "ack", scheduler_pb2.Ack(run=run.id, lease=lease))
            else:
                session.send(
                    Message(refused=scheduler_pb2.Refused(run=run_id, reason="this worker no longer holds the run", lease=lease))
                )
        # Runs the database gives this worker but that it did not claim: not started, so they are
        # sent again; started, by a process of this worker that is gone (it was restarted under
        # the same name), so they are settled now rather than left RUNNING for good.
        claimed = set(holding)
        for run in held:
            if run.id in claimed:
                continue
            if run.state == states.PENDING and run.started is None:
                session.held.add(run.seq)
                from shiftboss.services.scheduler.dispatch import dispatch_message

                runtime = self.dispatcher.pools.get(run.pool)
                allowed = runtime.allowed_entrypoints if runtime is not None else ()
                out = Message()
                dispatch_message(run, self.service.seal, allowed, into=out.dispatch)
                session.send(out)
                continue
            target = states.CANCELLED if run.state == states.CANCELLING else states.CRASHED
            reason = f"worker {session.name} reconnected without it: the process that ran it is gone"
            with contextlib.suppress(ShiftbossError):  # changed meanwhile: then it is settled already
                await self.service.change_state(run.id, target, lease=run.lease, worker=session.key, message=reason)

    # ------------------------------------------------------------ reading

    async def read(self, session: WorkerSession, requests: Any) -> None:
        rate = self.service.settings.stream_messages_per_second
        budget = MessageBudget(rate)
        try:
            async for message in requests:
                inner = message.batch.messages if message.WhichOneof("kind") == "batch" else (message,)
                if not budget.take(len(inner)):  # a batch counts as the messages it holds
                    session.failure = ResourceExhausted(
                        f"worker {session.key} sent more than {rate:g} messages per second "
                        "(SHIFTBOSS_STREAM_MESSAGES_PER_SECOND); the stream is closed"
                    )
                    return
                for one in inner:
                    await self.handle(session, one)
        except asyncio.CancelledError:
            raise
        except ShiftbossError as exc:  # a bad message ends this session only, with its status
            session.failure = exc
            log.info("stream of worker %s ended: %s", session.key, exc.message)
        except Exception as exc:  # a broken stream ends this session only; its text stays in our log
            session.failure = database_error(exc) or Internal(f"the scheduler could not read the stream of worker {session.key}")
            log.warning("stream of worker %s ended", session.key, exc_info=exc)
        finally:
            session.close()

    async def handle(self, session: WorkerSession, message: scheduler_pb2.WorkerMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind in ("ack", "started", "finished"):
            body = getattr(message, kind)
            # Answered (Settled or Refused) once written; a malformed one is refused now, unremembered.
            # Remembered until written: a run started and finished while the database was
            # away keeps its lease, not expired back to SCHEDULED (see background.expire_leases);
            # its Finished, once written, forgets it (outcomes.answer).
            if self.outcomes.submit(session, kind, body) and len(session.acked) < MAX_ACKED:
                session.acked[body.run] = body.lease
        elif kind == "heartbeat":
            self.beat(session)
        elif kind == "credits":
            session.credits = max(0, message.credits.free)
            self.dispatcher.kick(session.pool)
        elif kind == "logs":
            try:
                await self.store_logs(session, message.logs)
            except Exception as exc:  # noqa: BLE001 - lines lost, never the stream
                error = exc if isinstance(exc, ShiftbossError) else database_error(exc)
                if error is None:
                    raise
                log.info("logs of worker %s dropped: %s", session.key, error.message)
        elif kind == "goodbye":
            session.goodbye = True
        elif kind == "batch":
            raise InvalidArgument("batch: a batch holds single messages, not another batch", field="batch")
        elif kind == "hello":
            raise InvalidArgument("hello: the stream already began with Hello; send it once", field="hello")

    async def store_logs(self, session: WorkerSession, batch: scheduler_pb2.LogBatch) -> None:
        """Keep the lines of runs this worker ran; lines naming any other run, or malformed,
        are dropped. The batch's runs are read with one query, whatever it names."""
        by_run: dict[str, list[tuple[datetime, str, str]]] = {}
        if len(batch.lines) > MAX_LOG_LINES:
            log.info("log lines of worker %s past the first %d of a batch dropped", session.key, MAX_LOG_LINES)
        for line in batch.lines[:MAX_LOG_LINES]:
            try:
                check_log_line(line)
            except ShiftbossError as exc:
                log.info("a log line of worker %s dropped: %s", session.key, exc.message)
                continue
            at = from_timestamp(line.at) if line.HasField("at") else datetime.now(timezone.utc)
            by_run.setdefault(line.run, []).append((at, line.stream, line.text))
        kept: list[tuple[str, str, list[tuple[datetime, str, str]]]] = []
        if not by_run:
            return
        async with self.service.db.transaction() as db:
            runs = await run_store.get_many(db, set(by_run))
            for run_id, lines in by_run.items():
                run = runs.get(run_id)
                if run is None or run.worker != session.key:
                    log.info("log lines of flow run %r from worker %s dropped: the run is not its", run_id, session.key)
                    continue
                await run_store.add_logs(db, run, lines)
                kept.append((run_id, run.state, lines))
        for run_id, state, lines in kept:
            for at, stream, text in lines:
                self.service.events.publish(log_event(run_id, state, at, stream, text))

    # ------------------------------------------------------------ pushing

    def cancel(self, run: FlowRunRow) -> bool:
        """Push Cancel to the worker holding the run; False when that worker is not connected."""
        session = self.dispatcher.sessions.get(run.worker)
        if session is None or session.closed:
            return False
        session.send(Message(cancel=scheduler_pb2.Cancel(run=run.id, lease=run.lease)))
        return True

    def drain_all(self, reason: str) -> None:
        for session in list(self.dispatcher.sessions.values()):
            session.draining = True
            session.send(Message(drain=scheduler_pb2.Drain(reason=reason)))
            session.close()

    # ------------------------------------------------------------ heartbeats

    def beat(self, session: WorkerSession, gone: bool = False) -> None:
        beat = heartbeats_pb2.WorkerBeat(
            id=session.id,
            name=session.name,
            pool=session.pool,
            queues=session.queues or [],
            in_flight=len(session.held),
            limit=session.limit,
            heartbeat_seconds=self.service.settings.heartbeat_seconds,
            at=to_timestamp(datetime.now(timezone.utc)),
            gone=gone,
        )
        self.beats[session.key] = beat
        served = self.polled.get(session.pool, set())
        if session.queues is None or served is None:
            self.polled[session.pool] = None
        else:
            served.update(session.queues)
            self.polled[session.pool] = served

    async def _send_beats(self, stub: Any, beats: list[heartbeats_pb2.WorkerBeat]) -> None:
        """Every worker's beat in one call; each beat stands alone: HeartbeatService refuses a
        bad one in its reply, and should the whole request be refused for one beat, each is
        sent on its own and only the bad one is dropped."""
        try:
            reply = await self.service.call(stub.Beat, heartbeats_pb2.BeatRequest(beats=beats))
        except InvalidArgument:
            if len(beats) == 1:
                raise
            for beat in beats:
                try:
                    await self._send_beats(stub, [beat])
                except InvalidArgument as exc:
                    log.warning("heartbeat of worker %s/%s refused: %s", beat.pool, beat.name, exc.message)
            return
        for refused in reply.refused:
            who = beats[refused.index].id if 0 <= refused.index < len(beats) else "?"
            log.warning("heartbeat of worker %s refused: %s", who, refused.reason)

    @property
    def ping_seconds(self) -> float:
        return self.service.settings.heartbeat_seconds / 2

    def ping_idle(self) -> None:
        """An empty SchedulerBatch to every stream that sent nothing for `ping_seconds`:
        so a worker hears that this server still runs, and one that hears nothing (a server
        stopped, paused, cut off) connects again rather than wait on it (Welcome.ping_seconds)."""
        now, every = time.monotonic(), self.ping_seconds
        for session in list(self.dispatcher.sessions.values()):
            if session.batches and not session.closed and now - session.last_sent >= every:
                session.last_sent = now
                session.send(PING)

    async def flush(self) -> None:
        """Send buffered beats to HeartbeatService and mark the served queues polled."""
        self.ping_idle()
        from shiftboss.v1 import heartbeats_pb2_grpc

        beats, self.beats = self.beats, {}
        polled, self.polled = self.polled, {}
        service = self.service
        if beats:
            stub = service.mesh.peers.stub("heartbeats", heartbeats_pb2_grpc.HeartbeatServiceStub)
            try:
                await self._send_beats(stub, list(beats.values()))
            except ShiftbossError:
                # Not recorded: kept for the next flush, under any beat newer than it.
                self.beats = {**beats, **self.beats}
                self.polled = {**polled, **self.polled}
                raise
        for pool, names in polled.items():
            request = pools_pb2.MarkPolledRequest(pool=pool, names=sorted(names or []))
            with contextlib.suppress(NotFound):
                await service.call(service.pools.MarkPolled, request)
