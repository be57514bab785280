"""Work pools and work queues: the rules, as plain functions over a session.

Every function runs inside the caller's transaction; a raised error rolls back all of
it, so a failed request leaves no row behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import lazyload

from shiftboss.core import MAX_LIMIT
from shiftboss.entrypoints import check_patterns
from shiftboss.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shiftboss.services.names import validate_name
from shiftboss.services.pools.models import WorkPoolRow, WorkQueueRow

DEFAULT_QUEUE = "default"
POOL_TYPES = (
    "process",
    "docker",
    "kubernetes",
    "ecs",
    "cloud-run",
    "vertex-ai",
    "azure-container-instance",
    "noop",
)
#: A queue is READY while a worker served it within this many seconds.
QUEUE_READY_SECONDS = 60.0

#: The largest concurrency limit: what the contract's int32 field and the Integer column
#: hold. The scheduling core holds up to MAX_LIMIT (2**63 - 1), so it takes any of them.
MAX_CONCURRENCY_LIMIT = min(2**31 - 1, MAX_LIMIT)

_UNSET: Any = object()


def validate_limit(field: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidArgument(f"{field}: must be at least 1, got {value}", field=field)
    if value is not None and value > MAX_CONCURRENCY_LIMIT:
        raise InvalidArgument(f"{field}: must be at most {MAX_CONCURRENCY_LIMIT}, got {value}", field=field)
    return value


def validate_entrypoint_patterns(patterns: list[str]) -> list[str]:
    try:
        return check_patterns(patterns)
    except ValueError as exc:
        raise InvalidArgument(f"allowed_entrypoints: {exc}", field="allowed_entrypoints") from None


def validate_worker_queue_limit(value: int) -> int:
    if value < 0:
        raise InvalidArgument(f"worker_queue_limit: must not be negative, got {value}", field="worker_queue_limit")
    return value


def validate_priority(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidArgument(f"priority: must be a positive integer (1 is highest), got {value}", field="priority")
    return value


def validate_type(value: str) -> str:
    if not value:
        raise InvalidArgument(f"type: is required; one of {', '.join(POOL_TYPES)}", field="type")
    if value not in POOL_TYPES:
        raise InvalidArgument(
            f"type: unknown work pool type {value!r}; one of {', '.join(POOL_TYPES)}", field="type"
        )
    return value


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def queue_status(queue: WorkQueueRow, now: datetime) -> str:
    if queue.paused:
        return "PAUSED"
    polled = as_utc(queue.last_polled)
    if polled is not None and (now - polled).total_seconds() <= QUEUE_READY_SECONDS:
        return "READY"
    return "NOT_READY"


def default_queue(pool: WorkPoolRow) -> str:
    return next((q.name for q in pool.queues if q.is_default), "")


def pool_status(pool: WorkPoolRow, online_workers: int) -> str:
    if pool.paused:
        return "PAUSED"
    return "READY" if online_workers > 0 else "NOT_READY"


# ---------------------------------------------------------------- pools


async def get_pool(session: AsyncSession, name: str, *, lock: bool = False, field: str = "name") -> WorkPoolRow:
    if not name:
        raise InvalidArgument(f"{field}: a work pool name is required", field=field)
    validate_name(field, name)
    query = select(WorkPoolRow).where(WorkPoolRow.name == name)
    if lock:
        query = query.with_for_update()
    pool = (await session.execute(query)).unique().scalar_one_or_none()
    if pool is None:
        raise NotFound(f"work pool {name!r} not found", field=field)
    return pool


async def list_pools(session: AsyncSession) -> list[WorkPoolRow]:
    return list((await session.execute(select(WorkPoolRow).order_by(WorkPoolRow.name))).unique().scalars())


async def create_pool(
    session: AsyncSession,
    *,
    name: str,
    type: str,
    description: str = "",
    paused: bool = False,
    concurrency_limit: int | None = None,
    base_job_template: dict[str, Any],
    worker_queue_limit: int = 0,
    allowed_entrypoints: list[str] | None = None,
) -> WorkPoolRow:
    validate_name("name", name)
    validate_type(type)
    validate_limit("concurrency_limit", concurrency_limit)
    validate_worker_queue_limit(worker_queue_limit)
    existing = (await session.execute(select(WorkPoolRow.id).where(WorkPoolRow.name == name))).first()
    if existing is not None:
        raise AlreadyExists(f"work pool {name!r} already exists", field="name")
    pool = WorkPoolRow(
        name=name,
        type=type,
        description=description,
        paused=paused,
        concurrency_limit=concurrency_limit,
        base_job_template=base_job_template,
        worker_queue_limit=worker_queue_limit,
        allowed_entrypoints=validate_entrypoint_patterns(allowed_entrypoints or []),
        queue_count=1,
    )
    pool.queues = [
        WorkQueueRow(name=DEFAULT_QUEUE, priority=1, description="The pool's default queue", paused=False, is_default=True)
    ]
    session.add(pool)
    await session.flush()
    return pool


async def update_pool(
    session: AsyncSession,
    name: str,
    *,
    description: str | None = None,
    concurrency_limit: int | None = _UNSET,
    base_job_template: dict[str, Any] | None = None,
    paused: bool | None = None,
    worker_queue_limit: int | None = None,
    allowed_entrypoints: list[str] | None = None,
) -> WorkPoolRow:
    pool = await get_pool(session, name, lock=True)
    if allowed_entrypoints is not None:
        pool.allowed_entrypoints = validate_entrypoint_patterns(allowed_entrypoints)
    if worker_queue_limit is not None:
        pool.worker_queue_limit = validate_worker_queue_limit(worker_queue_limit)
    if description is not None:
        pool.description = description
    if concurrency_limit is not _UNSET:
        pool.concurrency_limit = validate_limit("concurrency_limit", concurrency_limit)
    if base_job_template is not None:
        pool.base_job_template = base_job_template
    if paused is not None:
        pool.paused = paused
    pool.updated = datetime.now(timezone.utc)
    await session.flush()
    return pool


async def delete_pool(session: AsyncSession, name: str) -> WorkPoolRow:
    pool = await get_pool(session, name, lock=True)
    await session.delete(pool)
    await session.flush()
    return pool


# ---------------------------------------------------------------- queues


def _find_queue(pool: WorkPoolRow, name: str) -> WorkQueueRow:
    for queue in pool.queues:
        if queue.name == name:
            return queue
    raise NotFound(f"work queue {name!r} not found in work pool {pool.name!r}", field="name")


def lowest_free_priority(taken: Iterable[int]) -> int:
    used = set(taken)
    candidate = 1
    while candidate in used:
        candidate += 1
    return candidate


def place(queues: list[WorkQueueRow], moving: WorkQueueRow, priority: int) -> None:
    """Put `moving` at `priority`; the queues at and below move down just as far as needed.

    {default 1, A 2, B 3} + C at 2 gives default 1, C 2, A 3, B 4; a gap below stops the shift.
    """
    others = sorted((q for q in queues if q is not moving), key=lambda q: q.priority)
    current = priority
    for queue in others:
        if queue.priority < priority:
            continue
        if queue.priority > current:
            break
        queue.priority = current + 1
        current = queue.priority
    moving.priority = priority


async def get_queue(session: AsyncSession, pool_name: str, name: str, *, lock: bool = False) -> WorkQueueRow:
    validate_name("name", name)
    pool = await get_pool(session, pool_name, lock=lock, field="pool")
    return _find_queue(pool, name)


async def create_queue(
    session: AsyncSession,
    *,
    pool_name: str,
    name: str,
    priority: int | None = None,
    concurrency_limit: int | None = None,
    description: str = "",
    paused: bool = False,
) -> WorkQueueRow:
    validate_name("name", name)
    validate_priority(priority)
    validate_limit("concurrency_limit", concurrency_limit)
    pool = await get_pool(session, pool_name, lock=True, field="pool")
    if any(q.name == name for q in pool.queues):
        raise AlreadyExists(f"work queue {name!r} already exists in work pool {pool_name!r}", field="name")
    forget_renamed_from(pool, name)
    queue = WorkQueueRow(
        name=name,
        priority=0,
        concurrency_limit=concurrency_limit,
        description=description,
        paused=paused,
    )
    if priority is None:
        queue.priority = lowest_free_priority(q.priority for q in pool.queues)
    else:
        place(list(pool.queues), queue, priority)
    pool.queues.append(queue)
    pool.queue_count += 1
    await session.flush()
    return queue


async def ensure_queues(
    session: AsyncSession, pool_name: str, names: list[str], *, worker_key: str = ""
) -> tuple[list[WorkQueueRow], list[str]]:
    """The named queues of a pool in priority order, creating the missing ones (a worker
    naming queues), and the names it created. A worker key creates them only as far as
    the pool's `worker_queue_limit` allows.

    Neither the pool's queues are loaded nor counted: the named ones are found by their
    unique index, the count is the pool's own, and the new priorities come from the
    largest one taken (`free_priorities`), so adding a queue costs O(log n) in the pool's
    queues rather than O(n)."""
    for name in names:
        validate_name("names", name)
    if not names:
        return await list_queues(session, pool_name), []
    query = select(WorkPoolRow).options(lazyload(WorkPoolRow.queues)).where(WorkPoolRow.name == validate_name("pool", pool_name))
    pool = (await session.execute(query.with_for_update())).scalar_one_or_none()
    if pool is None:
        raise NotFound(f"work pool {pool_name!r} not found", field="pool")
    wanted = list(dict.fromkeys(names))
    found = await session.execute(
        select(WorkQueueRow).options(lazyload(WorkQueueRow.pool)).where(WorkQueueRow.pool_id == pool.id, WorkQueueRow.name.in_(wanted))
    )
    queues = {queue.name: queue for queue in found.scalars()}
    missing = [name for name in wanted if name not in queues]
    if missing and worker_key:
        limit = pool.worker_queue_limit
        if limit <= 0:
            raise NotFound(
                f"queues: work queue {missing[0]!r} not found in work pool {pool.name!r}; worker key '{worker_key}' "
                f"serves existing queues only (an admin lets workers add queues: "
                f"work-pool update {pool.name} --worker-queue-limit N)",
                field="queues",
            )
        if pool.queue_count + len(missing) > limit:
            raise FailedPrecondition(
                f"queues: work pool {pool.name!r} has {pool.queue_count} queues; worker keys may add queues only up to "
                f"{limit} (its worker_queue_limit), and {len(missing)} more were named",
                field="queues",
            )
    if missing:
        stale = await session.execute(
            select(WorkQueueRow).options(lazyload(WorkQueueRow.pool)).where(
                WorkQueueRow.pool_id == pool.id, WorkQueueRow.renamed_from.in_(missing)
            )
        )
        for queue in stale.scalars():
            queue.renamed_from = None
        for name, priority in zip(missing, await free_priorities(session, pool, len(missing))):
            queue = queues[name] = WorkQueueRow(pool_id=pool.id, name=name, priority=priority, description="", paused=False)
            session.add(queue)
        pool.queue_count += len(missing)
        await session.flush()
    return sorted(queues.values(), key=lambda q: q.priority), missing


async def free_priorities(session: AsyncSession, pool: WorkPoolRow, count: int) -> list[int]:
    """The `count` lowest priorities no queue of the pool holds. When the largest taken one
    equals the pool's count of queues, 1 to it are all taken: one look at the index. Only
    a pool with gaps (a deleted queue, one placed further down) is read in full, and each
    queue created then fills a gap."""
    top = (await session.execute(select(func.max(WorkQueueRow.priority)).where(WorkQueueRow.pool_id == pool.id))).scalar() or 0
    if top == pool.queue_count:
        return list(range(top + 1, top + 1 + count))
    taken = set((await session.execute(select(WorkQueueRow.priority).where(WorkQueueRow.pool_id == pool.id))).scalars())
    free: list[int] = []
    candidate = 1
    while len(free) < count:
        if candidate not in taken:
            free.append(candidate)
        candidate += 1
    return free


def forget_renamed_from(pool: WorkPoolRow, name: str) -> None:
    """A queue made under a name that another queue of the pool had before a rename: that
    rename must never be applied again to runs, which would now be the new queue's."""
    for queue in pool.queues:
        if queue.renamed_from == name:
            queue.renamed_from = None


async def update_queue(
    session: AsyncSession,
    pool_name: str,
    name: str,
    *,
    priority: int | None = None,
    concurrency_limit: int | None = _UNSET,
    description: str | None = None,
    paused: bool | None = None,
    new_name: str | None = None,
) -> WorkQueueRow:
    """Change a queue. A new name is remembered in `renamed_from` until `rename_followed`:
    runs and deployments, which the scheduler keeps, refer to queues by name."""
    validate_priority(priority)
    if concurrency_limit is not _UNSET:
        validate_limit("concurrency_limit", concurrency_limit)
    if new_name is not None:
        validate_name("new_name", new_name)
    queue = await get_queue(session, pool_name, name, lock=True)
    if new_name is not None and new_name != queue.name:
        if any(q.name == new_name for q in queue.pool.queues):
            raise AlreadyExists(f"new_name: work queue {new_name!r} already exists in work pool {pool_name!r}", field="new_name")
        forget_renamed_from(queue.pool, new_name)
        queue.renamed_from = queue.name
        queue.name = new_name
    if priority is not None and priority != queue.priority:
        place(list(queue.pool.queues), queue, priority)
    if concurrency_limit is not _UNSET:
        queue.concurrency_limit = validate_limit("concurrency_limit", concurrency_limit)
    if description is not None:
        queue.description = description
    if paused is not None:
        queue.paused = paused
    queue.updated = datetime.now(timezone.utc)
    await session.flush()
    return queue


async def rename_followed(session: AsyncSession, pool_name: str, name: str) -> None:
    """The scheduler's deployments and runs follow the queue's new name: forget the old one."""
    queue = await get_queue(session, pool_name, name, lock=True)
    queue.renamed_from = None
    await session.flush()


async def delete_queue(session: AsyncSession, pool_name: str, name: str) -> WorkQueueRow:
    queue = await get_queue(session, pool_name, name, lock=True)
    if queue.is_default:
        raise FailedPrecondition(
            f"work queue {name!r} of work pool {pool_name!r} cannot be deleted: it is the pool's default queue", field="name"
        )
    pool = queue.pool
    pool.queues.remove(queue)
    pool.queue_count -= 1
    await session.flush()
    return queue


async def list_queues(session: AsyncSession, pool_name: str) -> list[WorkQueueRow]:
    pool = await get_pool(session, pool_name, field="pool")
    return sorted(pool.queues, key=lambda q: q.priority)


async def mark_polled(session: AsyncSession, pool_name: str, names: list[str], at: datetime) -> None:
    pool = await get_pool(session, pool_name, field="pool")
    for queue in pool.queues:
        if not names or queue.name in names:
            queue.last_polled = at
    await session.flush()
