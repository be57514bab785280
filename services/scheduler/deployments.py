"""Deployments and their schedules, as plain functions over a session."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import raiseload
from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss.errors import AlreadyExists, InvalidArgument, NotFound
from shiftboss.services.scheduler import retries as retry_policy
from shiftboss.services.scheduler import schedules
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunRow, ScheduleRow, now_utc

MAX_NAME_LENGTH = 255
_ENTRYPOINT = re.compile(r"^(?P<target>[^:]+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def validate_name(field: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field}: must not be empty", field=field)
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{field}: {len(value)} characters is longer than the limit of {MAX_NAME_LENGTH}", field=field)
    bad = sorted({c for c in value if c in "/%&<>" or not c.isprintable()})
    if bad:
        raise InvalidArgument(
            f"{field}: {value!r} contains {' '.join(repr(c) for c in bad)}; names may not hold / % & < > or control characters",
            field=field,
        )
    return value


def validate_entrypoint(value: str) -> str:
    """path/to/file.py:function or package.module:function."""
    match = _ENTRYPOINT.match(value or "")
    if not match:
        raise InvalidArgument(
            f"entrypoint: {value!r} is not path/to/file.py:function or package.module:function", field="entrypoint"
        )
    target = match["target"]
    if not target.endswith(".py") and not _MODULE.match(target):
        raise InvalidArgument(f"entrypoint: {target!r} is neither a .py file nor a module path", field="entrypoint")
    return value


def validate_object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field}: must be a JSON object", field=field)
    return value


async def get(session: AsyncSession, name: str, *, schedules: bool = True) -> DeploymentRow:
    if not name:
        raise InvalidArgument("deployment: a deployment name is required", field="deployment")
    query = select(DeploymentRow).where(DeploymentRow.name == name)
    if not schedules:
        query = query.options(raiseload(DeploymentRow.schedules))
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"deployment {name!r} not found", field="deployment")
    return row


async def get_many(session: AsyncSession, names: set[str]) -> dict[str, DeploymentRow]:
    """The deployments among these names that exist, by name, without their schedules."""
    query = select(DeploymentRow).where(DeploymentRow.name.in_(sorted(names))).options(raiseload(DeploymentRow.schedules))
    return {row.name: row for row in (await session.execute(query)).scalars()}


async def list_all(session: AsyncSession, pool: str = "") -> list[DeploymentRow]:
    query = select(DeploymentRow).order_by(DeploymentRow.name)
    if pool:
        query = query.where(DeploymentRow.pool == pool)
    return list((await session.execute(query)).scalars())


def schedule_row(cron: str, tz: str, interval: float, rrule: str = "", anchor_date: str = "") -> ScheduleRow | None:
    if anchor_date and not interval:
        raise InvalidArgument("anchor_date: an anchor date belongs to an interval schedule", field="anchor_date")
    if not cron and not interval and not rrule:
        return None
    schedules.check_schedule(cron, tz, interval, rrule)
    anchor = schedules.parse_anchor(anchor_date, tz) or now_utc()
    return ScheduleRow(cron=cron, timezone=tz or "UTC", interval_seconds=interval or 0.0, rrule=rrule, anchor=anchor)


def schedule_signature(rows: list[ScheduleRow]) -> list[tuple[str, str, float, str, bool]]:
    return [(r.cron, r.timezone or "UTC", r.interval_seconds or 0.0, r.rrule or "", bool(r.paused)) for r in rows]


async def drop_schedule_runs(session: AsyncSession, row: DeploymentRow) -> list[FlowRunRow]:
    """The runs its schedules made that have not gone out; they are made again from the new schedules."""
    query = select(FlowRunRow).where(
        FlowRunRow.deployment_id == row.id, FlowRunRow.state == "SCHEDULED", FlowRunRow.slot.is_not(None)
    )
    dropped = list((await session.execute(query)).scalars())
    for run in dropped:
        await session.delete(run)
    return dropped


async def create(
    session: AsyncSession,
    *,
    name: str,
    pool: str,
    queue: str,
    entrypoint: str,
    parameters: dict[str, Any],
    job_variables: dict[str, Any],
    cron: str = "",
    timezone: str = "",
    interval: float = 0.0,
    rrule: str = "",
    anchor_date: str = "",
    description: str = "",
    tags: list[str] | None = None,
    paused: bool = False,
    retries: int = 0,
    retry_delay_seconds: float = 0.0,
) -> DeploymentRow:
    validate_name("name", name)
    validate_entrypoint(entrypoint)
    retry_policy.check(retries, retry_delay_seconds)
    exists = (await session.execute(select(DeploymentRow.id).where(DeploymentRow.name == name))).first()
    if exists is not None:
        raise AlreadyExists(f"deployment {name!r} already exists", field="name")
    row = DeploymentRow(
        name=name,
        pool=pool,
        queue=queue,
        entrypoint=entrypoint,
        parameters=parameters,
        job_variables=job_variables,
        description=description,
        tags=list(tags or []),
        paused=paused,
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
    )
    schedule = schedule_row(cron, timezone, interval, rrule, anchor_date)
    row.schedules = [schedule] if schedule else []
    session.add(row)
    await session.flush()
    return row


async def delete(session: AsyncSession, name: str) -> tuple[DeploymentRow, list[FlowRunRow]]:
    """Delete a deployment and its runs that have not been released yet; returns those runs."""
    row = await get(session, name)
    waiting = list(
        (
            await session.execute(
                select(FlowRunRow).where(FlowRunRow.deployment_id == row.id, FlowRunRow.state == "SCHEDULED")
            )
        ).scalars()
    )
    for run in waiting:
        await session.delete(run)
    await session.delete(row)
    await session.flush()
    return row, waiting


def due_slots(deployment: DeploymentRow, now: datetime, ahead: schedules.Ahead) -> list[tuple[ScheduleRow, datetime]]:
    """The runs each active schedule keeps ahead of now (Prefect's rule, schedule by schedule)."""
    if deployment.paused:
        return []
    found: list[tuple[ScheduleRow, datetime]] = []
    for schedule in deployment.schedules:
        if schedule.paused:
            continue
        anchor = schedule.anchor if schedule.anchor.tzinfo else schedule.anchor.replace(tzinfo=now.tzinfo)
        moments = schedules.upcoming(
            schedule.cron, schedule.timezone, schedule.interval_seconds, schedule.rrule or "", anchor, now, ahead
        )
        found.extend((schedule, moment) for moment in moments)
    found.sort(key=lambda pair: pair[1])
    return found


def slot_key(schedule: ScheduleRow, moment: datetime) -> str:
    return f"{schedule.id}@{moment.strftime('%Y%m%dT%H%M%S.%f')}"


async def move_queue(session: AsyncSession, pool: str, name: str, new_name: str) -> tuple[int, int]:
    """A queue renamed: its deployments and its runs, ended ones too, take the new name (the
    deployments' `updated` moves, so runs being made from them are made again). Rows that
    already have it are left alone, so applying a rename twice changes nothing."""
    moved = await session.execute(
        update(DeploymentRow)
        .where(DeploymentRow.pool == pool, DeploymentRow.queue == name)
        .values(queue=new_name, updated=now_utc())
        .execution_options(synchronize_session=False)
    )
    runs = await session.execute(
        update(FlowRunRow)
        .where(FlowRunRow.pool == pool, FlowRunRow.queue == name)
        .values(queue=new_name)
        .execution_options(synchronize_session=False)
    )
    return moved.rowcount or 0, runs.rowcount or 0
