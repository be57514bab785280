"""Flow runs in the database: creation, state changes with history, leases, logs."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss.errors import InvalidArgument, NotFound
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.models import FlowRunRow, LogRow, StateChangeRow

_INSERT_HISTORY = insert(StateChangeRow.__table__)

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


def state_name(run: Any, shown: str) -> str:
    """Prefect's name of the state where it is not its type's: AwaitingRetry, Late."""
    if run.state == states.SCHEDULED and run.state_name:
        return run.state_name
    return "Late" if shown == states.LATE else ""


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
    run.state_name = ""
    if state in states.TERMINAL:
        run.ended = at
        run.lease_expires = None
    if state == states.SCHEDULED:
        # The worker of the last lease stays: its outcome, if it ran the run after all,
        # may still come (engine.Scheduler.transition); no other worker's may.
        run.lease_expires = None
    history.append({"run_seq": run.seq, "state": state, "at": at, "message": message})
    return Transition(run, before, state, at, message)


async def add_history(db: Any, history: list[dict[str, Any]]) -> None:
    """Write lines of history (from `record`) with one statement; `db` is a session or a connection."""
    if history:
        await db.execute(_INSERT_HISTORY, history)


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


async def by_idempotency_key(session: AsyncSession, key: str) -> FlowRunRow | None:
    query = select(FlowRunRow).where(FlowRunRow.idempotency_key == key)
    return (await session.execute(query)).scalars().first()


async def held_by(session: AsyncSession, worker: str) -> list[FlowRunRow]:
    query = select(FlowRunRow).where(FlowRunRow.worker == worker, FlowRunRow.state.in_(states.ON_WORKER))
    return list((await session.execute(query)).scalars())


async def holders(session: AsyncSession, pool: str | None = None) -> set[str]:
    """The workers (pool/name) that hold runs, of one pool or all, by the database."""
    query = select(FlowRunRow.worker).where(FlowRunRow.state.in_(states.ON_WORKER), FlowRunRow.worker != "").distinct()
    if pool is not None:
        query = query.where(FlowRunRow.pool == pool)
    return set((await session.execute(query)).scalars())


async def newest_seq(session: AsyncSession) -> int:
    """The seq of the newest run (0 with none)."""
    return (await session.execute(select(func.max(FlowRunRow.seq)))).scalar() or 0


async def live(session: AsyncSession, pool: str | None = None, waiting_only: bool = False, after: int | None = None) -> list[Any]:
    """Runs not yet ended (waiting or on a worker; waiting only if so asked), of one pool or
    all (made after seq `after` only, when given), as the core needs them: seq, pool, queue, state, scheduled_start and worker. Rows,
    not mapped objects, so that a server with a million waiting runs reads them in seconds."""
    wanted = [states.SCHEDULED] if waiting_only else [states.SCHEDULED, *states.ON_WORKER]
    run = FlowRunRow
    query = select(run.seq, run.pool, run.queue, run.state, run.scheduled_start, run.worker).where(run.state.in_(wanted))
    if pool is not None:
        query = query.where(run.pool == pool)
    if after is not None:  # only runs made after the one with this seq
        query = query.where(run.seq > after)
    return list((await session.execute(query.order_by(run.seq))).all())


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
    deployment: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    offset: int = 0,
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
    if deployment:
        query = query.where(FlowRunRow.deployment == deployment)
    if since is not None:
        query = query.where(FlowRunRow.scheduled_start >= since)
    if until is not None:
        query = query.where(FlowRunRow.scheduled_start <= until)
    order = (FlowRunRow.scheduled_start, FlowRunRow.seq) if soonest_first else (FlowRunRow.scheduled_start.desc(), FlowRunRow.seq.desc())
    return list((await session.execute(query.order_by(*order).limit(limit).offset(offset))).scalars())


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


async def health(session: AsyncSession, pool: str, queue: str, now: datetime, late_seconds: float) -> tuple[int, datetime | None]:
    """A pool's (or queue's) runs LATE now, and when one was last sent to a worker (as
    Prefect's work queue status shows them)."""
    late = select(func.count()).where(
        FlowRunRow.pool == pool,
        FlowRunRow.state == states.SCHEDULED,
        FlowRunRow.scheduled_start < now - timedelta(seconds=late_seconds),
    )
    served = select(func.max(FlowRunRow.dispatched)).where(FlowRunRow.pool == pool)
    if queue:
        late, served = late.where(FlowRunRow.queue == queue), served.where(FlowRunRow.queue == queue)
    return (await session.execute(late)).scalar() or 0, as_utc((await session.execute(served)).scalar())


async def usage(
    session: AsyncSession, pool: str, queue: str = "", counted: frozenset[str] = states.ON_WORKER
) -> tuple[int, int]:
    """Runs of a pool (or one of its queues) on workers (or in the `counted` states), and waiting."""
    query = select(FlowRunRow.state, func.count()).where(
        FlowRunRow.pool == pool, FlowRunRow.state.in_([states.SCHEDULED, *states.ON_WORKER])
    )
    if queue:
        query = query.where(FlowRunRow.queue == queue)
    counts: dict[str, int] = {state: n for state, n in (await session.execute(query.group_by(FlowRunRow.state))).all()}
    return sum(counts.get(s, 0) for s in counted), counts.get(states.SCHEDULED, 0)
