"""Flow runs in the database: creation, state changes with history, leases, logs."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss.errors import InvalidArgument, NotFound
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.models import FlowRunDraft, FlowRunRow, LogRow, StateChangeRow

_RUNS = FlowRunRow.__table__
_HISTORY = StateChangeRow.__table__
_INSERT_HISTORY = insert(_HISTORY)
#: Every column of a new run but its key, which the database assigns.
_INSERTED = [column.key for column in _RUNS.columns if column.key != "seq"]
#: Keys come back matched by id, not in order: asking for the parameters' order makes
#: SQLAlchemy insert one row per statement on SQLite (its RETURNING order is not guaranteed).
_INSERT_RUNS = insert(_RUNS).returning(_RUNS.c.id, _RUNS.c.seq)

_ADJECTIVES = ("amber", "brisk", "calm", "dapper", "eager", "fuzzy", "gentle", "hasty", "icy", "jolly", "keen", "lucky", "mellow", "nimble", "olive", "proud", "quiet", "rapid", "sunny", "tidy")
_NOUNS = ("badger", "condor", "dingo", "egret", "falcon", "gecko", "heron", "ibis", "jackal", "koala", "lemur", "marten", "newt", "otter", "panda", "quail", "raven", "stoat", "tapir", "walrus")


def run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}"


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def shown_state(run: FlowRunRow, now: datetime, late_seconds: float) -> str:
    """LATE is a SCHEDULED run whose start passed by more than the late threshold."""
    if run.state == states.SCHEDULED and (now - as_utc(run.scheduled_start)).total_seconds() > late_seconds:
        return states.LATE
    return run.state


@dataclass(slots=True)
class Transition:
    """One state change, as the core must see it (and watchers, see wire.transition_event)."""

    run: Any
    before: str
    after: str
    at: datetime | None = None
    message: str = ""
    exit_code: int | None = None


def record(history: list[dict[str, Any]], run: Any, state: str, at: datetime, message: str = "") -> Transition:
    """Change a run's state (a FlowRunRow or a LiveRun) and add the line of its history to
    `history`, which the caller writes with `add_history` in the same transaction."""
    before = run.state
    run.state = state
    run.message = message
    if state in states.TERMINAL:
        run.ended = at
        run.lease_expires = None
    if state == states.SCHEDULED:
        run.worker = ""
        run.lease_expires = None
    history.append({"run_seq": run.seq, "state": state, "at": at, "message": message})
    return Transition(run, before, state, at, message)


async def add_history(db: Any, history: list[dict[str, Any]]) -> None:
    """Write lines of history (from `record`) with one statement; `db` is a session or a connection."""
    if history:
        await db.execute(_INSERT_HISTORY, history)


@dataclass(slots=True, eq=False)
class LiveRun:
    """What a state change reads and writes of a run, loaded without the ORM (see `lock_live`)."""

    seq: int
    id: str
    pool: str
    queue: str
    scheduled_start: datetime
    state: str
    message: str
    worker: str
    lease: int
    lease_expires: datetime | None
    exit_code: int | None
    started: datetime | None
    ended: datetime | None


_LIVE = [_RUNS.c[name] for name in LiveRun.__slots__]
#: The columns a state change may write (see `record` and SchedulerService.transition).
_CHANGED = ("state", "message", "worker", "lease_expires", "exit_code", "started", "ended")
_SAVE_LIVE = (
    update(_RUNS)
    .where(_RUNS.c.seq == bindparam("_seq"))
    .values({name: bindparam(f"_{name}") for name in _CHANGED})
)


_LOCK_LIVE = (
    select(*_LIVE).where(_RUNS.c.id.in_(bindparam("_ids", expanding=True))).order_by(_RUNS.c.seq).with_for_update()
)


async def lock_live(db: Any, run_ids: set[str]) -> dict[str, LiveRun]:
    """The runs among these ids that exist, by id, locked for the transaction."""
    if not run_ids:
        return {}
    return {row[1]: LiveRun(*row) for row in await db.execute(_LOCK_LIVE, {"_ids": sorted(run_ids)})}


async def save_live(db: Any, runs: list[LiveRun]) -> None:
    """Write back what state changes did to these runs, with one statement for all."""
    if runs:
        await db.execute(_SAVE_LIVE, [{"_seq": run.seq, **{f"_{k}": getattr(run, k) for k in _CHANGED}} for run in runs])


async def get_many(session: AsyncSession, run_ids: set[str], *, lock: bool = False) -> dict[str, FlowRunRow]:
    """The runs among these ids that exist, by id."""
    if not run_ids:
        return {}
    query = select(FlowRunRow).where(FlowRunRow.id.in_(sorted(run_ids))).order_by(FlowRunRow.seq)
    if lock:
        query = query.with_for_update()
    return {run.id: run for run in (await session.execute(query)).scalars()}


async def get(session: AsyncSession, run_id: str, *, lock: bool = False) -> FlowRunRow:
    if not run_id:
        raise InvalidArgument("id: a flow run id is required", field="id")
    query = select(FlowRunRow).where(FlowRunRow.id == run_id)
    if lock:
        query = query.with_for_update()
    run = (await session.execute(query)).scalar_one_or_none()
    if run is None:
        raise NotFound(f"flow run {run_id!r} not found", field="id")
    return run


async def by_seq(session: AsyncSession, keys: Iterable[int]) -> list[FlowRunRow]:
    keys = list(keys)
    if not keys:
        return []
    rows = (await session.execute(select(FlowRunRow).where(FlowRunRow.seq.in_(keys)).with_for_update())).scalars()
    order = {k: i for i, k in enumerate(keys)}
    return sorted(rows, key=lambda r: order[r.seq])


async def history(session: AsyncSession, run: FlowRunRow) -> list[StateChangeRow]:
    query = select(StateChangeRow).where(StateChangeRow.run_seq == run.seq).order_by(StateChangeRow.id)
    return list((await session.execute(query)).scalars())


async def insert_many(db: Any, runs: list[FlowRunDraft]) -> None:
    """New runs (every column set by the caller) and the first line of their histories: two
    statements for the whole batch, on a session or a connection. Each run learns its key."""
    if not runs:
        return
    values = [{key: getattr(run, key) for key in _INSERTED} for run in runs]
    keys = {run_id: key for run_id, key in await db.execute(_INSERT_RUNS, values)}
    for run in runs:
        run.seq = keys[run.id]
    await add_history(db, [{"run_seq": r.seq, "state": r.state, "at": r.created, "message": r.message} for r in runs])


#: The columns a Dispatch is built from (see dispatch.dispatch_message), with those the
#: dispatch's telemetry reads (scheduler/telemetry.py), and the key.
_DISPATCHED = [_RUNS.c[name] for name in (
    "seq", "id", "name", "deployment", "pool", "queue", "entrypoint", "parameters", "job_configuration",
    "scheduled_start", "created", "state", "message", "worker", "lease", "traceparent",
)]
_LEASE = (
    update(_RUNS)
    .where(_RUNS.c.seq.in_(bindparam("_keys", expanding=True)), _RUNS.c.state == states.SCHEDULED)
    .values(
        state=states.PENDING,
        message=bindparam("_message"),
        worker=bindparam("_worker"),
        lease=_RUNS.c.lease + 1,
        lease_expires=bindparam("_expires"),
        dispatched=bindparam("_now"),
    )
    .returning(*_DISPATCHED)
)


async def lease(db: Any, keys: list[int], worker: str, now: datetime, lease_seconds: float) -> list[Any]:
    """Release the runs to a worker: PENDING, with a new fencing token and an ack deadline.

    One UPDATE checks and changes them all, so a run that left SCHEDULED meanwhile
    (cancelled, or taken by another replica) is not released; returns the released runs'
    rows as they now are (the columns of a Dispatch), in the order of `keys`."""
    if not keys:
        return []
    message = f"released to worker {worker}"
    expires = now + timedelta(seconds=lease_seconds)
    rows = (await db.execute(_LEASE, {"_keys": keys, "_message": message, "_worker": worker, "_expires": expires, "_now": now})).all()
    if not rows:
        return []
    await add_history(db, [{"run_seq": r.seq, "state": states.PENDING, "at": now, "message": message} for r in rows])
    order = {k: i for i, k in enumerate(keys)}
    return sorted(rows, key=lambda r: order[r.seq])


async def held_by(session: AsyncSession, worker: str) -> list[FlowRunRow]:
    query = select(FlowRunRow).where(FlowRunRow.worker == worker, FlowRunRow.state.in_(states.OCCUPYING))
    return list((await session.execute(query)).scalars())


async def live(session: AsyncSession) -> list[FlowRunRow]:
    """Runs the core must know: waiting or on a worker."""
    query = select(FlowRunRow).where(FlowRunRow.state.in_([states.SCHEDULED, *states.OCCUPYING])).order_by(FlowRunRow.seq)
    return list((await session.execute(query)).scalars())


async def expired_leases(session: AsyncSession, now: datetime) -> list[FlowRunRow]:
    query = select(FlowRunRow).where(
        FlowRunRow.state == states.PENDING, FlowRunRow.lease_expires.is_not(None), FlowRunRow.lease_expires <= now
    )
    return list((await session.execute(query.with_for_update())).scalars())


async def next_lease_expiry(session: AsyncSession) -> datetime | None:
    query = select(FlowRunRow.lease_expires).where(
        FlowRunRow.state == states.PENDING, FlowRunRow.lease_expires.is_not(None)
    ).order_by(FlowRunRow.lease_expires).limit(1)
    return as_utc((await session.execute(query)).scalar_one_or_none())


async def search(
    session: AsyncSession,
    *,
    pool: str = "",
    queue: str = "",
    stored_states: list[str] | None = None,
    deployment_id: str | None = None,
    until: datetime | None = None,
    limit: int = 200,
    soonest_first: bool = False,
) -> list[FlowRunRow]:
    query = select(FlowRunRow)
    if pool:
        query = query.where(FlowRunRow.pool == pool)
    if queue:
        query = query.where(FlowRunRow.queue == queue)
    if stored_states:
        query = query.where(FlowRunRow.state.in_(stored_states))
    if deployment_id is not None:
        query = query.where(FlowRunRow.deployment_id == deployment_id)
    if until is not None:
        query = query.where(FlowRunRow.scheduled_start <= until)
    order = (FlowRunRow.scheduled_start, FlowRunRow.seq) if soonest_first else (FlowRunRow.scheduled_start.desc(), FlowRunRow.seq.desc())
    return list((await session.execute(query.order_by(*order).limit(limit))).scalars())


async def existing_slots(session: AsyncSession, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = await session.execute(select(FlowRunRow.slot).where(FlowRunRow.slot.in_(keys)))
    return {slot for (slot,) in rows}


async def add_logs(session: AsyncSession, run: FlowRunRow, lines: list[tuple[datetime, str, str]]) -> None:
    session.add_all(LogRow(run_seq=run.seq, at=at, stream=stream, text=text) for at, stream, text in lines)


async def logs(session: AsyncSession, run: FlowRunRow, after_id: int = 0) -> list[LogRow]:
    query = select(LogRow).where(LogRow.run_seq == run.seq, LogRow.id > after_id).order_by(LogRow.id)
    return list((await session.execute(query)).scalars())


def payload(run: FlowRunRow) -> dict[str, Any]:
    return {"id": run.id, "seq": run.seq}


async def usage(session: AsyncSession, pool: str, queue: str = "") -> tuple[int, int]:
    """Runs of a pool (or one of its queues) on workers, and waiting."""
    query = select(FlowRunRow.state, func.count()).where(
        FlowRunRow.pool == pool, FlowRunRow.state.in_([states.SCHEDULED, *states.OCCUPYING])
    )
    if queue:
        query = query.where(FlowRunRow.queue == queue)
    counts: dict[str, int] = {state: n for state, n in (await session.execute(query.group_by(FlowRunRow.state))).all()}
    return sum(counts.get(s, 0) for s in states.OCCUPYING), counts.get(states.SCHEDULED, 0)
