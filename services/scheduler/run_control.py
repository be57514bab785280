"""What a user does to a run: cancel it, set its state, write lines to its logs. State
changes go through `Scheduler.change_state` (checked by states.py, under the pool's lock);
a run on a worker is cancelled through its stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shiftboss._wire import from_timestamp
from shiftboss.errors import FailedPrecondition, InvalidArgument, ShiftbossError
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.inbound import check_log_line
from shiftboss.services.scheduler.models import FlowRunRow, now_utc
from shiftboss.services.scheduler.secret_values import masked, open_configuration
from shiftboss.services.scheduler.stream import MAX_LOG_LINES
from shiftboss.services.scheduler.wire import log_event
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler


async def cancel(engine: Scheduler, run_id: str) -> FlowRunRow:
    """A waiting run is cancelled at once; one on a worker is CANCELLING until its worker
    stops it, or cancelled at once when no worker holds it any more."""
    run = await engine.get_run(run_id)
    if run.state == states.SCHEDULED:
        run = await engine.change_state(run_id, states.CANCELLED, message="cancelled before it was released")
    elif run.state in (states.PENDING, states.RUNNING):
        run = await engine.change_state(run_id, states.CANCELLING, message="cancel requested")
        if not engine.stream.cancel(run):
            run = await engine.change_state(run_id, states.CANCELLED, message="its worker is gone")
    elif run.state != states.CANCELLING:
        raise FailedPrecondition(f"state: flow run {run_id!r} is {run.state} and cannot be cancelled", field="state")
    return run


async def set_state(engine: Scheduler, run_id: str, target: str, *, force: bool, message: str) -> FlowRunRow:
    """The state a user sets; CANCELLING also tells the run's worker."""
    run = await engine.change_state(run_id, target, force=force, message=message or "set by a user")
    if target == states.CANCELLING:
        engine.stream.cancel(run)
    return run


async def write_logs(engine: Scheduler, run_id: str, given: list[scheduler_pb2.LogLine]) -> int:
    """Lines a run's flow sends, checked, their secrets masked, stored and told to its
    watchers; how many were written."""
    if len(given) > MAX_LOG_LINES:
        raise InvalidArgument(f"lines: at most {MAX_LOG_LINES} per request, got {len(given)}", field="lines")
    lines = []
    for i, line in enumerate(given):
        line.run = run_id
        try:
            check_log_line(line)
        except ShiftbossError as exc:
            raise type(exc)(f"lines[{i}].{exc.message}", field="lines") from None
        lines.append((from_timestamp(line.at) if line.HasField("at") else now_utc(), line.stream or "stdout", line.text))
    async with engine.db.transaction() as session:
        run = await run_store.get(session, run_id)
        _, secrets = open_configuration(engine.seal, run.job_configuration)
        if secrets:  # what the worker masks in the run's output, masked here too
            lines = [(at, stream, masked(text, secrets)) for at, stream, text in lines]
        await run_store.add_logs(session, run, lines)
        state = run.state
    for at, stream, text in lines:
        engine.events.publish(log_event(run_id, state, at, stream, text))
    return len(lines)
