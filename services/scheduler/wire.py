"""SchedulerService's conversions between rows and messages."""

from __future__ import annotations

from datetime import datetime

from shiftboss._wire import to_struct, to_timestamp
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, FlowRunRow, ScheduleRow, StateChangeRow
from shiftboss.services.scheduler.secret_values import shown_configuration, shown_variables
from shiftboss.v1 import scheduler_pb2

RunState = scheduler_pb2.RunState


def schedule_to_proto(schedule: ScheduleRow) -> scheduler_pb2.Schedule:
    return scheduler_pb2.Schedule(
        id=schedule.id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_seconds=schedule.interval_seconds,
        rrule=schedule.rrule or "",
        paused=schedule.paused,
        anchor=to_timestamp(schedule.anchor),
    )


def deployment_to_proto(row: DeploymentRow) -> scheduler_pb2.Deployment:
    return scheduler_pb2.Deployment(
        id=row.id,
        name=row.name,
        entrypoint=row.entrypoint,
        pool=row.pool,
        queue=row.queue,
        parameters=to_struct(row.parameters),
        job_variables=to_struct(shown_variables(row.job_variables)),
        schedules=[schedule_to_proto(s) for s in row.schedules],
        paused=row.paused,
        description=row.description,
        tags=list(row.tags),
        created=to_timestamp(row.created),
        updated=to_timestamp(row.updated),
        retries=row.retries or 0,
        retry_delay_seconds=row.retry_delay_seconds or 0.0,
    )


def run_to_proto(
    run: FlowRunRow | FlowRunDraft, now: datetime, late_seconds: float, history: list[StateChangeRow] | None = None
) -> scheduler_pb2.FlowRun:
    shown = run_store.shown_state(run, now, late_seconds)
    message = scheduler_pb2.FlowRun(
        id=run.id,
        name=run.name,
        deployment=run.deployment,
        pool=run.pool,
        queue=run.queue,
        parameters=to_struct(run.parameters),
        job_variables=to_struct(shown_variables(run.job_variables)),
        scheduled_start=to_timestamp(run.scheduled_start),
        state=RunState.Value(shown),
        state_name=run_store.state_name(run, shown),
        run_count=run.run_count or 0,
        retries=run.retries or 0,
        retry_delay_seconds=run.retry_delay_seconds or 0.0,
        # A run back in its queue is nobody's, though it keeps the worker of its last lease.
        worker=run.worker.split("/", 1)[-1] if run.worker and run.state != states.SCHEDULED else "",
        created=to_timestamp(run.created),
        entrypoint=run.entrypoint,
        job_configuration=to_struct(shown_configuration(run.job_configuration)),
        message=run.message,
        history=[
            scheduler_pb2.StateChange(state=RunState.Value(h.state), at=to_timestamp(h.at), message=h.message)
            for h in history or []
        ],
    )
    if run.exit_code is not None:
        message.exit_code = run.exit_code
    return message


def state_event(run_id: str, state: str, at: datetime, message: str = "", exit_code: int | None = None) -> scheduler_pb2.FlowRunEvent:
    event = scheduler_pb2.FlowRunEvent(
        run=run_id, at=to_timestamp(at), kind="state", state=RunState.Value(state), text=state + (f": {message}" if message else "")
    )
    if exit_code is not None:
        event.exit_code = exit_code
    return event


def transition_event(change: run_store.Transition) -> scheduler_pb2.FlowRunEvent:
    return state_event(change.run.id, change.after, change.at, change.message, change.exit_code)


def log_event(run_id: str, state: str, at: datetime, stream: str, text: str) -> scheduler_pb2.FlowRunEvent:
    return scheduler_pb2.FlowRunEvent(
        run=run_id, at=to_timestamp(at), kind="log", state=RunState.Value(state), stream=stream, text=text
    )
