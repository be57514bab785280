"""Worker liveness: beats make a worker ONLINE, three missed intervals make it OFFLINE."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss.errors import FailedPrecondition, InvalidArgument, NotFound
from shiftboss.services import paging
from shiftboss.services.heartbeats.models import WorkerRow
from shiftboss.services.names import validate_name

#: Heartbeats a worker may miss before it is OFFLINE.
MISSED_BEATS = 3
#: Longest heartbeat interval accepted: far beyond any real one, and its deadline stays a date.
MAX_HEARTBEAT_SECONDS = 365 * 24 * 3600.0
_NAMESPACE = uuid.UUID("6f1c1d7e-3f6b-4c59-9a55-5b1f0f6a9d10")


@dataclass(slots=True)
class Beat:
    name: str
    pool: str
    type: str
    queues: list[str]
    in_flight: int
    limit: int
    heartbeat_seconds: float
    at: datetime
    #: It ended its stream on purpose: OFFLINE now.
    gone: bool = False


def worker_id(pool: str, name: str) -> str:
    """Stable across reconnects: the same worker name in the same pool is the same worker."""
    return str(uuid.uuid5(_NAMESPACE, f"{pool}\x00{name}"))


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def deadline(worker: WorkerRow) -> datetime:
    return as_utc(worker.last_heartbeat) + timedelta(seconds=MISSED_BEATS * worker.heartbeat_seconds)


#: Longest infrastructure type (its column).
MAX_TYPE = 64


def check_beat(beat: Beat) -> None:
    """Every field of one beat, before it is written with others: one bad beat is refused
    alone rather than failing the batch it came in."""
    validate_name("beats.name", beat.name)
    validate_name("beats.pool", beat.pool)
    if len(beat.type) > MAX_TYPE or "\x00" in beat.type:
        raise InvalidArgument(f"beats.type: at most {MAX_TYPE} characters, no NUL", field="beats.type")
    for queue in beat.queues:
        validate_name("beats.queues", queue)
    if not (math.isfinite(beat.heartbeat_seconds) and 0 < beat.heartbeat_seconds <= MAX_HEARTBEAT_SECONDS):
        # NaN passed a plain `<= 0` check and reached the NOT NULL column as NULL.
        raise InvalidArgument(
            f"beats.heartbeat_seconds: must be a positive number of seconds, at most a year, got {beat.heartbeat_seconds}",
            field="beats.heartbeat_seconds",
        )
    if beat.in_flight < 0 or beat.limit < 0:
        raise InvalidArgument("beats.in_flight, beats.limit: must not be negative", field="beats")


async def record(session: AsyncSession, beats: list[Beat]) -> list[WorkerRow]:
    """Store beats (each passed `check_beat`); returns the workers whose status changed:
    ONLINE (new, or back from OFFLINE), or OFFLINE (a beat that says it is gone)."""
    changed: list[WorkerRow] = []
    for beat in beats:
        key = worker_id(beat.pool, beat.name)
        worker = await session.get(WorkerRow, key)
        if worker is None:
            worker = WorkerRow(id=key, name=beat.name, pool=beat.pool, created=beat.at, status="OFFLINE")
            session.add(worker)
        elif as_utc(worker.last_heartbeat) > beat.at:
            continue  # an older beat delivered late
        status = "OFFLINE" if beat.gone else "ONLINE"
        if worker.status != status:
            changed.append(worker)
        worker.status = status
        worker.type = beat.type
        worker.queues = list(beat.queues)
        worker.in_flight = 0 if beat.gone else beat.in_flight
        worker.limit = beat.limit
        worker.heartbeat_seconds = beat.heartbeat_seconds
        worker.last_heartbeat = beat.at
    await session.flush()
    return changed


async def expire(session: AsyncSession, now: datetime) -> list[WorkerRow]:
    """Mark OFFLINE every ONLINE worker past its deadline; returns them."""
    online = (await session.execute(select(WorkerRow).where(WorkerRow.status == "ONLINE"))).scalars()
    gone = [w for w in online if deadline(w) <= now]
    for worker in gone:
        worker.status = "OFFLINE"
        worker.in_flight = 0
    await session.flush()
    return gone


async def next_deadline(session: AsyncSession) -> datetime | None:
    online = (await session.execute(select(WorkerRow).where(WorkerRow.status == "ONLINE"))).scalars()
    deadlines = [deadline(w) for w in online]
    return min(deadlines) if deadlines else None


async def list_workers(session: AsyncSession, pool: str, limit: int = 0, offset: int = 0) -> list[WorkerRow]:
    """Latest heartbeat first, as Prefect lists workers."""
    paging.check(limit, offset)
    query = select(WorkerRow).order_by(WorkerRow.last_heartbeat.desc(), WorkerRow.pool, WorkerRow.name)
    if pool:
        query = query.where(WorkerRow.pool == pool)
    if limit:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list((await session.execute(query)).scalars())


async def delete_worker(session: AsyncSession, pool: str, name: str) -> None:
    """Forget a worker. One that is ONLINE holds a stream and may hold runs: refused."""
    worker = await get_worker(session, pool, name)
    if worker.status == "ONLINE":
        raise FailedPrecondition(f"worker {name!r} of work pool {pool!r} is ONLINE; stop it first", field="name")
    await session.delete(worker)
    await session.flush()


async def get_worker(session: AsyncSession, pool: str, name: str) -> WorkerRow:
    if not pool:
        raise InvalidArgument("pool: a work pool name is required", field="pool")
    worker = await session.get(WorkerRow, worker_id(pool, name))
    if worker is None:
        raise NotFound(f"worker {name!r} not found in work pool {pool!r}", field="name")
    return worker


async def count_online(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(WorkerRow.pool, func.count()).where(WorkerRow.status == "ONLINE").group_by(WorkerRow.pool)
    )
    return {pool: count for pool, count in rows}
