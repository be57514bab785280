"""Acks, starts and finishes from every worker stream, recorded in one transaction per batch
(see batches.py). Each report is checked on its own (lease, worker, legal transition); one
bad report gets its Refused and does not hold back the others. A recorded Finished is
answered with Settled once committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shiftboss._wire import from_timestamp
from shiftboss.errors import FailedPrecondition, InvalidArgument, NotFound, ShiftbossError
from shiftboss.services.scheduler import hot
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.batches import BatchWriter
from shiftboss.services.scheduler.sessions import WorkerSession
from shiftboss.services.scheduler.wire import transition_event
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService

log = logging.getLogger("shiftboss.scheduler")
Message = scheduler_pb2.SchedulerMessage
#: States a worker may report in Finished.
FINAL = {states.COMPLETED, states.FAILED, states.CRASHED, states.CANCELLED}
#: A report the database refused is written again after 1, 2, 4 ... seconds (30 at most),
#: this many times (some ten minutes).
RETRY_FIRST_SECONDS, RETRY_MOST_SECONDS, RETRIES = 1.0, 30.0, 24


@dataclass(slots=True)
class Report:
    session: WorkerSession
    #: "ack", "started" or "finished"
    kind: str
    #: The Ack, Started or Finished message.
    body: Any
    #: An outcome carried by a Hello after an outage (see SchedulerService.transition).
    late: bool = False
    error: ShiftbossError | None = None
    #: The database refused it: no answer (the worker sends a Finished again until it is
    #: settled), and it is written again here while the stream lasts.
    unwritten: bool = False
    #: Times it was written again after the database refused it.
    retries: int = 0


class OutcomeWriter(BatchWriter[Report]):
    name = "outcome-writer"

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self.service = service

    def submit(self, session: WorkerSession, kind: str, body: Any) -> None:
        self.enqueue(Report(session, kind, body))

    async def settle(self, session: WorkerSession, outcomes: list[scheduler_pb2.Finished]) -> None:
        """Record a Hello's outcomes now (the worker is not attached until they are)."""
        reports = [Report(session, "finished", f, late=True) for f in outcomes]
        await self.write(reports)
        for report in reports:
            if report.error is not None:
                log.info("worker %s reported an outcome we dropped: %s", session.key, report.error.message)

    def failed(self, item: Report, exc: Exception) -> None:
        """The database could not take it (it went away a moment): write it again later, with
        backoff, while the worker's stream lasts. The worker took the run whatever the database
        says; an Ack or a Started the worker will not send again must reach it, or the lease
        would lapse under a running run."""
        item.unwritten = True
        if item.late or item.session.closed or item.retries >= RETRIES:
            return
        item.retries += 1
        delay = min(RETRY_MOST_SECONDS, RETRY_FIRST_SECONDS * 2 ** (item.retries - 1))
        asyncio.get_running_loop().call_later(delay, self._again, item)

    def _again(self, item: Report) -> None:
        if item.session.closed or self.stopping or self.task is None or self.task.done():
            return
        item.unwritten, item.error = False, None
        self.enqueue(item)

    async def write(self, batch: list[Report]) -> None:
        service = self.service
        async with service.locks_for(report.session.pool for report in batch):
            changes: list[run_store.Transition] = []
            async with hot.transaction(service.db) as db:
                runs = await db.lock_live({report.body.run for report in batch})
                history: list[dict[str, Any]] = []
                changed: dict[int, hot.LiveRun] = {}
                for report in batch:
                    report.error = None
                    try:
                        done = self._apply(history, runs, report)
                    except ShiftbossError as exc:
                        report.error = exc
                        continue
                    run = runs[report.body.run]
                    changed[run.seq] = run
                    if done is not None:
                        changes.append(done)
                await db.save_live(list(changed.values()), history)
            for change in changes:
                service.dispatcher.apply(change)
        if service.events.listening:
            for change in changes:
                service.events.publish(transition_event(change))

    def _apply(
        self, history: list[dict[str, Any]], runs: dict[str, hot.LiveRun], report: Report
    ) -> run_store.Transition | None:
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
                history, run, states.RUNNING, lease=body.lease, worker=session.key, at=at, idempotent=True,
                message=f"started by worker {session.name}",
            )
        state = scheduler_pb2.RunState.Name(body.state)
        if state not in FINAL:
            raise InvalidArgument(f"state: a finished run is one of {', '.join(sorted(FINAL))}, not {state}", field="state")
        return self.service.transition(
            history, run, state, lease=body.lease, worker=session.key, at=at, idempotent=True, message=body.message,
            exit_code=body.exit_code if body.HasField("exit_code") else None, late=report.late,
        )

    def answer(self, batch: list[Report]) -> None:
        for report in batch:
            body = report.body
            if report.unwritten:
                continue
            if report.error is not None:
                report.session.send(Message(refused=scheduler_pb2.Refused(run=body.run, reason=report.error.message, lease=body.lease)))
            elif report.kind == "finished":
                report.session.send(Message(settled=scheduler_pb2.Settled(run=body.run, lease=body.lease)))
