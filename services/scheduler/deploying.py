"""Deployments as users change them: created, updated, applied from a file, paused,
resumed and deleted. Each is checked against its pool and template through the engine's
peers, then written through the store (deployments.py) in one transaction; runs a change
removes leave the admission state through `Scheduler.forget_runs`, and the schedules are
looked at again at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss._wire import from_struct
from shiftboss.errors import InvalidArgument, NotFound, ShiftbossError
from shiftboss.services import paging
from shiftboss.services.scheduler import deployments, readiness, retries
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunRow, ScheduleRow, now_utc
from shiftboss.services.scheduler.wire import deployment_to_proto
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler


async def create(engine: Scheduler, request: scheduler_pb2.CreateDeploymentRequest) -> scheduler_pb2.Deployment:
    """A new deployment in its pool's named queue, or the pool's default one."""
    job_variables = from_struct(request.job_variables)
    queue, secrets = await _checked_place(engine, request.name, request.pool, request.queue, request.entrypoint, job_variables)
    job_variables = engine.stored_variables(secrets, job_variables)
    async with engine.db.transaction() as session:
        row = await deployments.create(
            session,
            name=request.name,
            pool=request.pool,
            queue=queue,
            entrypoint=request.entrypoint,
            parameters=from_struct(request.parameters),
            job_variables=job_variables,
            cron=request.cron,
            timezone=request.timezone,
            interval=request.interval,
            rrule=request.rrule,
            anchor_date=request.anchor_date,
            description=request.description,
            tags=list(request.tags),
            paused=request.paused,
            retries=request.retries,
            retry_delay_seconds=request.retry_delay_seconds,
        )
        reply = deployment_to_proto(row)
    engine.schedules_due.set()
    return (await readiness.with_status(engine, [reply]))[0]


async def read(engine: Scheduler, name: str) -> scheduler_pb2.Deployment:
    """One deployment, with its status (readiness.py)."""
    async with engine.db.reading() as session:
        reply = deployment_to_proto(await deployments.get(session, name))
    return (await readiness.with_status(engine, [reply]))[0]


async def listed(engine: Scheduler, pool: str, limit: int, offset: int) -> list[scheduler_pb2.Deployment]:
    """A page of the deployments (of one pool, when named), with their status."""
    async with engine.db.reading() as session:
        rows = paging.page(await deployments.list_all(session, pool), limit, offset)
        replies = [deployment_to_proto(r) for r in rows]
    return await readiness.with_status(engine, replies)


async def update(engine: Scheduler, request: scheduler_pb2.UpdateDeploymentRequest) -> scheduler_pb2.Deployment:
    """The fields the request sets, changed; new schedules, or a new queue, replace the
    runs the old ones made that have not gone out."""
    async with engine.db.reading() as session:
        current = await deployments.get(session, request.name)
    if request.HasField("entrypoint"):
        deployments.validate_entrypoint(request.entrypoint)
        await engine.check_entrypoint(current.pool, request.entrypoint)
    if request.HasField("queue"):
        await engine.check_queue(current.pool, request.queue)
    secrets = frozenset[str]()
    if request.HasField("job_variables"):
        secrets = await engine.check_variables(current.pool, from_struct(request.job_variables))
    retries.check(
        request.retries if request.HasField("retries") else current.retries,
        request.retry_delay_seconds if request.HasField("retry_delay_seconds") else current.retry_delay_seconds,
    )
    new_schedule = None
    schedule_given = request.HasField("cron") or request.HasField("interval") or request.HasField("rrule")
    replace_schedules = request.clear_schedules or schedule_given
    if schedule_given or request.anchor_date:
        new_schedule = deployments.schedule_row(
            request.cron, request.timezone, request.interval, request.rrule, request.anchor_date
        )
    async with engine.db.transaction() as session:
        row = await deployments.get(session, request.name)
        if request.HasField("entrypoint"):
            row.entrypoint = request.entrypoint
        if request.HasField("queue"):
            row.queue = request.queue
        if request.HasField("parameters"):
            row.parameters = from_struct(request.parameters)
        if request.HasField("job_variables"):
            row.job_variables = engine.stored_variables(secrets, from_struct(request.job_variables), row.job_variables)
        if request.HasField("description"):
            row.description = request.description
        if request.HasField("retries"):
            row.retries = request.retries
        if request.HasField("retry_delay_seconds"):
            row.retry_delay_seconds = request.retry_delay_seconds
        dropped: list[FlowRunRow] = []
        if replace_schedules or request.HasField("queue"):  # made again, by the new schedules or in the new queue
            dropped = await deployments.drop_schedule_runs(session, row)
        if replace_schedules:
            row.schedules = [new_schedule] if new_schedule else []
        reply = await _saved(session, row)
    _replan(engine, dropped, "replaced by the deployment's new schedules")
    return (await readiness.with_status(engine, [reply]))[0]


async def apply(engine: Scheduler, specs: Sequence[scheduler_pb2.DeploymentSpec]) -> list[scheduler_pb2.AppliedDeployment]:
    """Every spec is checked first and every problem reported at once; then all are
    written in one transaction, so a file with one bad deployment changes nothing."""
    if not specs:
        raise InvalidArgument("deployments: nothing to apply", field="deployments")
    problems: list[ShiftbossError] = []
    checked: list[tuple[list[ScheduleRow], frozenset[str], str]] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"deployments[{i}]"
        try:
            if spec.name in seen:
                raise InvalidArgument(f"name: {spec.name!r} appears more than once", field="name")
            seen.add(spec.name)
            checked.append(await _checked_spec(engine, spec))
        except ShiftbossError as exc:
            named = exc.field is not None and exc.message.startswith(f"{exc.field}")
            problems.append(type(exc)(f"{where}.{exc.message}" if named else f"{where}: {exc.message}"))
    if problems:
        raise type(problems[0])("; ".join(p.message for p in problems), field="deployments")
    applied: list[scheduler_pb2.AppliedDeployment] = []
    dropped: list[FlowRunRow] = []
    async with engine.db.transaction() as session:
        for spec, (rows, secrets, queue) in zip(specs, checked):
            try:
                row: DeploymentRow | None = await deployments.get(session, spec.name)
            except NotFound:
                row = None
            job_variables = from_struct(spec.job_variables)
            fields = dict(
                entrypoint=spec.entrypoint, pool=spec.pool, queue=queue,
                parameters=from_struct(spec.parameters),
                job_variables=engine.stored_variables(secrets, job_variables, row.job_variables if row else None),
                description=spec.description, tags=list(spec.tags), paused=spec.paused,
                retries=spec.retries, retry_delay_seconds=spec.retry_delay_seconds,
            )
            if row is None:
                row = await deployments.create(session, name=spec.name, **fields)
                row.schedules = rows
                action = "created"
            else:
                moved = (row.pool, row.queue) != (fields["pool"], fields["queue"])
                rescheduled = deployments.schedule_signature(row.schedules) != deployments.schedule_signature(rows)
                changed = moved or rescheduled or any(getattr(row, k) != v for k, v in fields.items())
                if moved or rescheduled:
                    dropped += await deployments.drop_schedule_runs(session, row)
                if rescheduled:
                    row.schedules = rows
                for key, value in fields.items():
                    setattr(row, key, value)
                if changed:
                    row.updated = now_utc()
                action = "updated" if changed else "unchanged"
            await session.flush()
            applied.append(scheduler_pb2.AppliedDeployment(action=action, deployment=deployment_to_proto(row)))
    _replan(engine, dropped, "replaced by the deployment's new schedules")
    return applied


async def _checked_spec(engine: Scheduler, spec: scheduler_pb2.DeploymentSpec) -> tuple[list[ScheduleRow], frozenset[str], str]:
    """One spec of a file, checked: its schedules' rows, its secret variables and its queue."""
    queue, secrets = await _checked_place(engine, spec.name, spec.pool, spec.queue, spec.entrypoint, from_struct(spec.job_variables))
    retries.check(spec.retries, spec.retry_delay_seconds)
    rows = []
    for i, schedule in enumerate(spec.schedules):
        if not schedule.cron and not schedule.interval and not schedule.rrule:
            raise InvalidArgument(f"schedules[{i}]: give a cron expression, an interval or an rrule", field="schedules")
        try:
            row = deployments.schedule_row(
                schedule.cron, schedule.timezone, schedule.interval, schedule.rrule, schedule.anchor_date
            )
        except ShiftbossError as exc:
            raise type(exc)(f"schedules[{i}].{exc.message}", field="schedules") from None
        assert row is not None
        row.paused = schedule.paused
        rows.append(row)
    return rows, secrets, queue


async def set_paused(engine: Scheduler, name: str, paused: bool) -> scheduler_pb2.Deployment:
    """Pausing removes the runs its schedules made that have not gone out (runs made by
    hand stay); resuming makes them again, as Prefect does."""
    async with engine.db.transaction() as session:
        row = await deployments.get(session, name)
        dropped = await deployments.drop_schedule_runs(session, row) if paused and not row.paused else []
        row.paused = paused
        reply = await _saved(session, row)
    _replan(engine, dropped, "its deployment was paused")
    return (await readiness.with_status(engine, [reply]))[0]


async def delete(engine: Scheduler, name: str) -> None:
    """The deployment, and its runs that have not gone out."""
    async with engine.db.transaction() as session:
        _, removed = await deployments.delete(session, name)
    engine.forget_runs(removed, f"deleted with deployment {name!r}")


async def _checked_place(
    engine: Scheduler, name: str, pool: str, queue: str, entrypoint: str, job_variables: dict[str, Any]
) -> tuple[str, frozenset[str]]:
    """A new deployment's name, pool, queue, entrypoint and job variables, checked; its
    queue (the pool's default when none is named) and its secret variables."""
    deployments.validate_name("name", name)
    deployments.validate_entrypoint(entrypoint)
    if not pool:
        raise InvalidArgument("pool: a work pool name is required", field="pool")
    queue = await engine.queue_or_default(pool, queue)
    await engine.check_entrypoint(pool, entrypoint)
    return queue, await engine.check_variables(pool, job_variables)


async def _saved(session: AsyncSession, row: DeploymentRow) -> scheduler_pb2.Deployment:
    """A changed deployment, stamped (runs being made from it are made again) and flushed; its reply."""
    row.updated = now_utc()
    await session.flush()
    return deployment_to_proto(row)


def _replan(engine: Scheduler, dropped: list[FlowRunRow], why: str) -> None:
    """After a change: the runs it removed out of the admission state, and the schedules
    looked at again at once."""
    engine.forget_runs(dropped, why)
    engine.schedules_due.set()
