"""Acks, starts and finishes from every worker stream, recorded in one transaction per batch.

The reports of all workers queue up here while the previous batch is being written, and the
next batch takes them all: under load one commit records hundreds of state changes (a group
commit), and when idle a report is written as soon as it arrives. Each report is checked on
its own (lease, worker, legal transition); one bad report gets its Refused and does not
hold back the others. A recorded Finished is answered with Settled once committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shiftboss._wire import from_timestamp
from shiftboss.errors import FailedPrecondition, InvalidArgument, NotFound, ShiftbossError
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.sessions import WorkerSession
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService

log = logging.getLogger("shiftboss.scheduler")
Message = scheduler_pb2.SchedulerMessage
#: States a worker may report in Finished.
FINAL = {states.COMPLETED, states.FAILED, states.CRASHED, states.CANCELLED}
#: Most reports in one transaction.
MAX_BATCH = 500


@dataclass(slots=True)
class Report:
    session: WorkerSession
    message: scheduler_pb2.WorkerMessage
    #: An outcome carried by a Hello after an outage (see SchedulerService.transition).
    late: bool = False
    error: ShiftbossError | None = None
    #: The database refused it: no answer, so the worker sends it again with its next Hello.
    unwritten: bool = False

    @property
    def kind(self) -> str:
        return self.message.WhichOneof("kind") or ""

    @property
    def body(self) -> Any:
        return getattr(self.message, self.kind)


@dataclass
class OutcomeWriter:
    service: SchedulerService
    pending: list[Report] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="outcome-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop. Never cancelled in the middle of a transaction:
        a connection torn out of a running statement is left for the garbage collector."""
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            await self.task

    def submit(self, session: WorkerSession, message: scheduler_pb2.WorkerMessage) -> None:
        self.pending.append(Report(session, message))
        self.wake.set()

    async def settle(self, session: WorkerSession, outcomes: list[scheduler_pb2.Finished]) -> None:
        """Record a Hello's outcomes now (the worker is not attached until they are)."""
        reports = [Report(session, scheduler_pb2.WorkerMessage(finished=f), late=True) for f in outcomes]
        await self.write(reports)
        for report in reports:
            if report.error is not None:
                log.info("worker %s reported an outcome we dropped: %s", session.key, report.error.message)

    async def _loop(self) -> None:
        while not self.stopping or self.pending:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    await self.write(batch)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database failed the batch: each report on its own, so one cannot sink the rest
                    log.exception("writing %d worker reports at once failed; writing them one by one", len(batch))
                    for report in batch:
                        try:
                            await self.write([report])
                        except Exception:
                            report.unwritten = True
                self._answer(batch)

    async def write(self, batch: list[Report]) -> None:
        service = self.service
        pools = sorted({report.session.pool for report in batch})
        published: list[scheduler_pb2.FlowRunEvent] = []
        async with contextlib.AsyncExitStack() as locks:
            for pool in pools:  # always in name order; an admission pass holds one pool's lock only
                await locks.enter_async_context(service.lock_for(pool))
            changes: list[run_store.Transition] = []
            async with service.db.transaction() as db:
                runs = await run_store.get_many(db, {report.body.run for report in batch}, lock=True)
                for report in batch:
                    report.error = None
                    try:
                        done = self._apply(db, runs, report)
                    except ShiftbossError as exc:
                        report.error = exc
                        continue
                    if done is not None:
                        changes.append(done[0])
                        published.append(done[1])
            for change in changes:
                service.dispatcher.apply(change)
        for event in published:
            service.events.publish(event)

    def _apply(self, db: Any, runs: dict[str, Any], report: Report) -> tuple[run_store.Transition, Any] | None:
        body, session = report.body, report.session
        run = runs.get(body.run)
        if run is None:
            raise NotFound(f"flow run {body.run!r} not found", field="run")
        if report.kind == "ack":
            if run.lease != body.lease or run.worker != session.key:
                raise FailedPrecondition(f"lease: {body.lease} is stale for flow run {body.run!r}", field="lease")
            run.lease_expires = None
            return None
        at = from_timestamp(body.at) if body.HasField("at") else None
        if report.kind == "started":
            return self.service.transition(
                db, run, states.RUNNING, lease=body.lease, worker=session.key, at=at, idempotent=True,
                message=f"started by worker {session.name}",
            )
        state = scheduler_pb2.RunState.Name(body.state)
        if state not in FINAL:
            raise InvalidArgument(f"state: a finished run is one of {', '.join(sorted(FINAL))}, not {state}", field="state")
        return self.service.transition(
            db, run, state, lease=body.lease, worker=session.key, at=at, idempotent=True, message=body.message,
            exit_code=body.exit_code if body.HasField("exit_code") else None, late=report.late,
        )

    @staticmethod
    def _answer(batch: list[Report]) -> None:
        for report in batch:
            body = report.body
            if report.unwritten:
                continue
            if report.error is not None:
                report.session.send(Message(refused=scheduler_pb2.Refused(run=body.run, reason=report.error.message, lease=body.lease)))
            elif report.kind == "finished":
                report.session.send(Message(settled=scheduler_pb2.Settled(run=body.run, lease=body.lease)))
