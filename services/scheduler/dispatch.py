"""Push dispatch: the core's admission state of every pool, and the workers it feeds.

Every change that can make a run admissible (a new run, a freed slot, a resumed queue or
pool, a raised limit, a worker that connects or reports credits) *kicks* its pool; one
task per pool then runs an admission pass. The only timer is for the next run that
becomes due inside some worker's prefetch window. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shiftboss.core import PoolState
from shiftboss.services.broadcast import Broadcaster
from shiftboss.services.scheduler import hot
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.models import FlowRunRow
from shiftboss.services.scheduler.secret_values import open_configuration
from shiftboss.services.scheduler.ownership import NotOwner
from shiftboss.services.scheduler.sessions import WorkerSession
from shiftboss.services.scheduler.wire import state_event
from shiftboss.services.sealing import Seal
from shiftboss.v1 import pools_pb2, scheduler_pb2

log = logging.getLogger("shiftboss.scheduler")


def epoch(moment: datetime) -> float:
    return run_store.as_utc(moment).timestamp()


@dataclass(eq=False)
class PoolRuntime:
    name: str
    type: str
    state: PoolState
    #: The pool's base job template as PoolService last sent it (rendering needs no lookup).
    template: Any = None
    #: The pool's entrypoint policy (shiftboss.entrypoints), sent with each Dispatch.
    allowed_entrypoints: list[str] = field(default_factory=list)
    #: Last seen `updated` of the pool and of each queue, so stale events are ignored.
    seen: dict[str, float] = field(default_factory=dict)
    workers: list[WorkerSession] = field(default_factory=list)
    kicked: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    turn: int = 0


class Dispatcher:
    def __init__(self, db: Any, settings: Any, seal: Seal | None = None) -> None:
        self.db = db
        self.settings = settings
        #: Opens sealed job configurations and signs run tokens (services/sealing.py).
        self.seal = seal
        self.pools: dict[str, PoolRuntime] = {}
        self.sessions: dict[str, WorkerSession] = {}
        #: Every committed state change and log line of every run, for watchers.
        self.events: Broadcaster[scheduler_pb2.FlowRunEvent] = Broadcaster()
        #: Telemetry (services/scheduler/telemetry.py), told of each dispatch, of the end of each
        #: admission pass that dispatched, and of state changes; None when off.
        self.observer: Any = None
        #: Which pools this replica dispatches (ownership.py); None: every pool (one server).
        self.ownership: Any = None
        self._closed = False

    # ---------------------------------------------------------------- pools and queues

    def apply_pool(self, pool: pools_pb2.WorkPool) -> PoolRuntime:
        """Create or update a pool's runtime from its message (Watch event or direct reply)."""
        runtime = self.pools.get(pool.name)
        limit = pool.concurrency_limit if pool.HasField("concurrency_limit") else None
        stamp = pool.updated.ToNanoseconds()
        if runtime is None:
            runtime = self.pools[pool.name] = PoolRuntime(pool.name, pool.type, PoolState(limit, pool.paused))
            runtime.task = asyncio.create_task(self._admission_loop(runtime), name=f"admission-{pool.name}")
            if self.ownership is not None:
                self.ownership.pool_appeared(pool.name)
        elif stamp < runtime.seen.get("", 0):
            return runtime
        else:
            runtime.state.set_limit(limit)
            runtime.state.set_paused(pool.paused)
        runtime.seen[""] = stamp
        runtime.type = pool.type
        runtime.template = pool.base_job_template
        runtime.allowed_entrypoints = list(pool.allowed_entrypoints)
        self.kick(runtime.name)
        return runtime

    def apply_queue(self, pool: pools_pb2.WorkPool, queue: pools_pb2.WorkQueue) -> None:
        runtime = self.pools.get(pool.name) or self.apply_pool(pool)
        stamp = queue.updated.ToNanoseconds()
        if stamp < runtime.seen.get(queue.name, 0):
            return
        runtime.seen[queue.name] = stamp
        limit = queue.concurrency_limit if queue.HasField("concurrency_limit") else None
        if queue.name in runtime.state.queues():
            runtime.state.update_queue(queue.name, priority=queue.priority, limit=limit, paused=queue.paused)
        else:
            runtime.state.add_queue(queue.name, queue.priority, limit, queue.paused)
        self.kick(runtime.name)

    def rename_queue(self, pool: str, name: str, new_name: str) -> None:
        """The queue is `new_name` from now on, with its runs, slots and place in the
        waterfall; the workers serving it by name serve it still."""
        runtime = self.pools.get(pool)
        if runtime is None or name not in runtime.state.queues() or new_name in runtime.state.queues():
            return  # applied already (or the queue is not known here yet: it comes as new)
        runtime.state.rename_queue(name, new_name)
        if name in runtime.seen:
            runtime.seen[new_name] = runtime.seen.pop(name)
        for session in runtime.workers:
            if session.queues is not None:
                session.queues = [new_name if queue == name else queue for queue in session.queues]
        self.kick(pool)

    def drop_queue(self, pool: str, queue: str) -> None:
        runtime = self.pools.get(pool)
        if runtime is not None and queue in runtime.state.queues():
            runtime.state.remove_queue(queue)
            runtime.seen.pop(queue, None)

    def drop_pool(self, pool: str) -> None:
        if self.ownership is not None:
            self.ownership.pool_gone(pool)
        runtime = self.pools.pop(pool, None)
        if runtime is not None and runtime.task is not None:
            runtime.task.cancel()
        for session in list(runtime.workers if runtime else []):
            session.send(scheduler_pb2.SchedulerMessage(drain=scheduler_pb2.Drain(reason=f"work pool {pool!r} was deleted")))

    def load(self, rows: Iterable[Any]) -> None:
        """Put the database's live runs into the core (at start), those of pools this
        replica owns."""
        for run in rows:
            runtime = self.pools.get(run.pool)
            if runtime is None or not self.owns(run.pool) or run.queue not in runtime.state.queues() or run.seq in runtime.state:
                continue
            if run.state in states.OCCUPYING:
                runtime.state.occupy(run.seq, run.queue)
            elif run.state in states.CANDIDATE:
                runtime.state.add_run(run.seq, run.queue, epoch(run.scheduled_start))
            self.kick(run.pool)

    async def resync(self, pool: str) -> None:
        async with self.db.reading() as session:
            rows = await run_store.live(session, pool)
        self.load(rows)

    def owns(self, pool: str) -> bool:
        return self.ownership is None or self.ownership.owns(pool)

    def knows_queue(self, pool: str, queue: str) -> bool:
        runtime = self.pools.get(pool)
        return runtime is not None and queue in runtime.state.queues()

    # ---------------------------------------------------------------- state changes

    def apply(self, change: run_store.Transition) -> None:
        """Mirror one committed state change in the core, and kick if it freed or added work."""
        run, before, after = change.run, change.before, change.after
        if self.observer is not None:
            self.observer.changed(change)
        runtime = self.pools.get(run.pool)
        if runtime is None or run.queue not in runtime.state.queues() or not self.owns(run.pool):
            return
        core = runtime.state
        was_candidate, was_occupying = before in states.CANDIDATE, before in states.OCCUPYING
        if after in states.CANDIDATE:
            if was_occupying and run.seq in core:
                core.requeue(run.seq, epoch(run.scheduled_start))
            elif run.seq not in core:
                core.add_run(run.seq, run.queue, epoch(run.scheduled_start))
            self._forget(run.seq)
        elif after in states.OCCUPYING:
            if was_candidate and run.seq in core and not core.is_occupying(run.seq):
                core.release(run.seq)
            elif run.seq not in core:
                core.occupy(run.seq, run.queue)
        else:  # CANCELLING or ended: its slot is free; the worker holds a CANCELLING run until it stops
            if run.seq in core:
                if core.is_occupying(run.seq):
                    core.finish(run.seq)
                else:
                    core.remove_run(run.seq)
            if after in states.TERMINAL:
                self._forget(run.seq)
        self.kick(run.pool)

    def _forget(self, key: int) -> None:
        for session in self.sessions.values():
            session.held.discard(key)

    def reschedule(self, run: FlowRunRow) -> None:
        runtime = self.pools.get(run.pool)
        if runtime is not None and run.seq in runtime.state and not runtime.state.is_occupying(run.seq):
            runtime.state.reschedule(run.seq, epoch(run.scheduled_start))
            self.kick(run.pool)

    # ---------------------------------------------------------------- workers

    def attach(self, session: WorkerSession) -> None:
        old = self.sessions.get(session.key)
        if old is not None and old is not session:
            self.detach(old)
            old.send(scheduler_pb2.SchedulerMessage(drain=scheduler_pb2.Drain(reason="replaced by a newer stream")))
            old.close()
        self.sessions[session.key] = session
        runtime = self.pools[session.pool]
        runtime.workers.append(session)
        self.kick(session.pool)

    def detach(self, session: WorkerSession) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
        runtime = self.pools.get(session.pool)
        if runtime is not None and session in runtime.workers:
            runtime.workers.remove(session)

    def serves(self, pool: str, queue: str) -> bool:
        runtime = self.pools.get(pool)
        return runtime is not None and any(s.queues is None or queue in s.queues for s in runtime.workers)

    # ---------------------------------------------------------------- admission

    def kick(self, pool: str) -> None:
        runtime = self.pools.get(pool)
        if runtime is not None:
            runtime.kicked.set()

    async def _admission_loop(self, runtime: PoolRuntime) -> None:
        while not self._closed:
            wake = None
            try:
                wake = await self.admit_now(runtime)
            except asyncio.CancelledError:
                raise
            except NotOwner as exc:  # another replica dispatches the pool now (ownership.py)
                log.info("admission pass of pool %s stopped: %s", runtime.name, exc.message)
            except Exception:  # keep dispatching the pool after a failed pass
                log.exception("admission pass of pool %s failed", runtime.name)
            timeout = None if wake is None else max(0.0, wake - time.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(runtime.kicked.wait(), timeout)
            runtime.kicked.clear()

    async def admit_now(self, runtime: PoolRuntime, only: WorkerSession | None = None) -> float | None:
        """One admission pass; returns when the next run becomes due for some worker."""
        async with runtime.lock:
            runtime.kicked.clear()
            now = time.time()
            assigned: dict[WorkerSession, list[int]] = {}
            workers = [w for w in runtime.workers if not w.closed and (only is None or w is only)]
            if workers:
                start = runtime.turn % len(workers)
                runtime.turn += 1
                order = workers[start:] + workers[:start]
                # Round-robin one run at a time, so workers share the waterfall fairly.
                progress = True
                while progress:
                    progress = False
                    for worker in order:
                        free = worker.free()
                        taken = len(assigned.get(worker, ()))
                        if free is not None and free - taken <= 0:
                            continue
                        keys = runtime.state.admit(now, worker.prefetch, worker.queues, 1)
                        if keys:
                            assigned.setdefault(worker, []).extend(keys)
                            progress = True
            if assigned:
                await self._release(runtime, assigned)
            return self._next_wake(runtime)

    def _next_wake(self, runtime: PoolRuntime) -> float | None:
        """When the next run becomes admissible by time alone, for a worker with a free slot."""
        now = time.time()
        wakes = [
            wake
            for worker in runtime.workers
            if worker.free() != 0 and (wake := _wake_for(runtime.state, worker, now)) is not None
        ]
        return min(wakes) if wakes else None

    async def _release(self, runtime: PoolRuntime, assigned: dict[WorkerSession, list[int]]) -> None:
        now = datetime.now(timezone.utc)
        leased: dict[WorkerSession, list[Any]] = {}
        try:
            fence = self.ownership.fence([runtime.name]) if self.ownership is not None else None
            async with hot.transaction(self.db, fence) as db:
                for worker, keys in assigned.items():
                    leased[worker] = await db.lease(keys, worker.key, now, self.settings.lease_seconds)
        except Exception:
            # The runs are still SCHEDULED in the database: forget them here and load them again.
            for keys in assigned.values():
                for key in keys:
                    runtime.state.remove_run(key)
            asyncio.get_running_loop().call_later(1.0, lambda: asyncio.ensure_future(self.resync(runtime.name)))
            raise
        for worker, keys in assigned.items():
            rows = leased.get(worker, [])
            got = {r.seq for r in rows}
            for key in keys:
                if key not in got:  # changed under us (cancelled, deleted): the core forgets it
                    runtime.state.remove_run(key)
            for run in rows:
                worker.held.add(run.seq)
                out = scheduler_pb2.SchedulerMessage()
                message = dispatch_message(run, self.seal, runtime.allowed_entrypoints, into=out.dispatch)
                if self.observer is not None:
                    self.observer.dispatching(run, message, now)
                worker.send(out)
                if self.events.listening:
                    self.events.publish(state_event(run.id, run.state, now, run.message))
        if self.observer is not None:
            self.observer.dispatched()  # the pass's spans and latencies, made together

    async def close(self) -> None:
        self._closed = True
        for runtime in self.pools.values():
            if runtime.task is not None:
                runtime.task.cancel()
        for runtime in self.pools.values():
            if runtime.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task


def _wake_for(state: Any, worker: WorkerSession, now: float) -> float | None:
    """When a run of the worker's queues that is not yet within its prefetch comes within it.

    A run already within it and still queued after a pass waits for a slot, a limit or a
    pause, not for time: the event that frees it (a run ending, a limit raised, a resume)
    kicks the pool. Such a run sets no timer (one in the past would run passes back to back
    for as long as it waits); the other queues' next runs still do."""
    due = state.next_due(worker.queues)
    if due is None:
        return None
    if due - worker.prefetch > now:
        return due - worker.prefetch
    later = [
        head - worker.prefetch
        for queue in (worker.queues or state.queues())
        if (head := state.next_due([queue])) is not None and head - worker.prefetch > now
    ]
    return min(later, default=None)


def dispatch_message(
    run: Any, seal: Seal | None, allowed_entrypoints: Iterable[str] = (), into: scheduler_pb2.Dispatch | None = None
) -> scheduler_pb2.Dispatch:
    """The Dispatch of a run (a FlowRunRow, or a row of the flow_runs table): its job
    configuration in clear, the texts to mask in its logs, its run token, and its pool's
    entrypoint policy. Written into `into` when given (the `dispatch` of the message that
    carries it), so that the Structs are built where they are sent rather than copied there."""
    configuration, masked = open_configuration(seal, run.job_configuration)
    message = scheduler_pb2.Dispatch() if into is None else into
    message.run = run.id
    message.lease = run.lease
    if run.scheduled_start is not None:
        message.scheduled_start.FromDatetime(run_store.as_utc(run.scheduled_start))
    if configuration:
        message.job_configuration.update(configuration)
    else:
        message.job_configuration.SetInParent()
    message.masked.extend(masked)
    message.allowed_entrypoints.extend(allowed_entrypoints)
    message.run_token = seal.run_token(run.id, run.lease) if seal is not None else ""
    message.entrypoint = run.entrypoint or ""
    if run.parameters:
        message.parameters.update(run.parameters)
    else:
        message.parameters.SetInParent()
    message.deployment = run.deployment or ""
    message.queue = run.queue or ""
    message.name = run.name or ""
    message.traceparent = run.traceparent or ""
    return message
