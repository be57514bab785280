"""Acks, starts and finishes from every worker stream, recorded in one transaction per batch
(see batches.py). Each report is checked on its own: its fields before it is queued
(inbound.py), then against its run: the stream's pool, the stream's worker, the run's
current lease, a legal transition. One bad report gets its Refused and does not hold back
the others, and a report about a run the worker does not hold is refused in the same words
whether the run is another pool's, another worker's or none at all: nothing of runs it may
not see leaks back. A recorded Finished is answered with Settled once committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shiftboss._wire import from_timestamp
from shiftboss.errors import FailedPrecondition, ShiftbossError, Unavailable
from shiftboss.services.db_errors import database_error
from shiftboss.services.scheduler import hot
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.batches import BatchWriter
from shiftboss.services.scheduler.inbound import check_report
from shiftboss.services.scheduler.sessions import WorkerSession
from shiftboss.services.scheduler.wire import transition_event
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

log = logging.getLogger("shiftboss.scheduler")
Message = scheduler_pb2.SchedulerMessage
#: A report the database refused is written again after 1, 2, 4 ... seconds (30 at most),
#: this many times (some ten minutes).
RETRY_FIRST_SECONDS, RETRY_MOST_SECONDS, RETRIES = 1.0, 30.0, 24


def not_held(run_id: str, lease: int) -> FailedPrecondition:
    """The one answer to a report about a run this worker does not hold under that lease."""
    return FailedPrecondition(f"lease: {lease} is stale or not this worker's for flow run {run_id!r}", field="lease")


@dataclass(slots=True)
class Report:
    session: WorkerSession
    #: "ack", "started" or "finished"
    kind: str
    #: The Ack, Started or Finished message.
    body: Any
    #: An outcome carried by a Hello after an outage (see Scheduler.transition).
    late: bool = False
    error: ShiftbossError | None = None
    #: The database refused it: no answer (the worker sends a Finished again until it is
    #: settled), and it is written again here while the stream lasts.
    unwritten: bool = False
    #: Times it was written again after the database refused it.
    retries: int = 0


class OutcomeWriter(BatchWriter[Report]):
    name = "outcome-writer"

    def __init__(self, service: Scheduler) -> None:
        super().__init__()
        self.service = service

    def submit(self, session: WorkerSession, kind: str, body: Any) -> bool:
        """Queue a report for the next batch (True), or refuse it now when it is malformed."""
        try:
            check_report(kind, body)
        except ShiftbossError as exc:
            session.send(Message(refused=scheduler_pb2.Refused(run=body.run, reason=exc.message, lease=body.lease)))
            return False
        self.enqueue(Report(session, kind, body))
        return True

    async def settle(self, session: WorkerSession, outcomes: list[scheduler_pb2.Finished]) -> None:
        """Record a Hello's outcomes now (the worker is not attached until they are): each
        refused alone when malformed or not the worker's, the rest written together, or one
        by one when the database refuses the batch. Raises Unavailable when the database
        cannot take them now (the worker sends them again with its next Hello)."""
        reports = []
        for finished in outcomes:
            report = Report(session, "finished", finished, late=True)
            try:
                check_report("finished", finished)
            except ShiftbossError as exc:
                report.error = exc
                self.answer([report])
                continue
            reports.append(report)
        if reports:
            try:
                await self.write(reports)
            except Exception:
                for report in reports:
                    try:
                        await self.write([report])
                    except Exception as exc:  # noqa: BLE001 - this report alone
                        self.failed(report, exc)
            unwritten = [r for r in reports if r.unwritten]
            if unwritten:
                raise Unavailable(f"the scheduler could not record {len(unwritten)} outcomes now; connect again to send them")
            self.answer(reports)
        for report in reports:
            if report.error is not None:
                log.info("worker %s reported an outcome we dropped: %s", session.key, report.error.message)

    def failed(self, item: Report, exc: Exception) -> None:
        """The database refused this report on its own. A value it cannot store is the
        report's fault: refused. Otherwise the database could not take it now (it went away
        a moment): written again later, with backoff, while the worker's stream lasts. The
        worker took the run whatever the database says; an Ack or a Started the worker will
        not send again must reach it, or the lease would lapse under a running run."""
        error = database_error(exc)
        if error is not None and not isinstance(error, Unavailable):
            item.error = error
            return
        log.warning("report of worker %s on flow run %s not written: %s", item.session.key, item.body.run, exc)
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
            fence = service.ownership.fence({report.session.pool for report in batch})  # see ownership.py
            async with hot.transaction(service.db, fence) as db:
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
        # The stream's identity first: its pool, its worker, the run's current lease.
        if run is None or run.pool != session.pool or run.worker != session.key or run.lease != body.lease:
            raise not_held(body.run, body.lease)
        if report.kind == "ack":
            if run.state not in states.ON_WORKER:  # back to SCHEDULED: the lease ran out
                raise not_held(body.run, body.lease)
            run.lease_expires = None
            return None
        at = from_timestamp(body.at) if body.HasField("at") else None
        if report.kind == "started":
            return self.service.transition(
                history, run, states.RUNNING, lease=body.lease, worker=session.key, at=at, idempotent=True,
                message=f"started by worker {session.name}",
            )
        state = scheduler_pb2.RunState.Name(body.state)  # a final state: see inbound.check_report
        return self.service.transition(
            history, run, state, lease=body.lease, worker=session.key, at=at, idempotent=True, message=body.message,
            exit_code=body.exit_code if body.HasField("exit_code") else None, late=report.late,
        )

    def answer(self, batch: list[Report]) -> None:
        for report in batch:
            body = report.body
            if report.unwritten:
                continue
            if (report.kind == "finished" or report.error is not None) and report.session.acked.get(body.run) == body.lease:
                del report.session.acked[body.run]  # written or refused: the lease is the database's again
            if report.error is not None:
                report.session.send(Message(refused=scheduler_pb2.Refused(run=body.run, reason=report.error.message, lease=body.lease)))
            elif report.kind == "finished":
                settled = Message()
                settled.settled.run, settled.settled.lease = body.run, body.lease
                report.session.send(settled)
