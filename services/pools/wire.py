"""PoolService's conversions between rows and messages."""

from __future__ import annotations

from datetime import datetime, timezone

from shiftboss._wire import to_struct, to_timestamp
from shiftboss.services.pools import domain
from shiftboss.services.pools.models import WorkPoolRow, WorkQueueRow
from shiftboss.v1 import common_pb2, pools_pb2


def pool_to_proto(pool: WorkPoolRow, online_workers: int = 0) -> pools_pb2.WorkPool:
    message = pools_pb2.WorkPool(
        id=pool.id,
        name=pool.name,
        type=pool.type,
        description=pool.description,
        paused=pool.paused,
        status=common_pb2.Status.Value(domain.pool_status(pool, online_workers)),
        base_job_template=to_struct(pool.base_job_template),
        created=to_timestamp(pool.created),
        updated=to_timestamp(pool.updated),
        queues=[q.name for q in sorted(pool.queues, key=lambda q: q.priority)],
        worker_queue_limit=pool.worker_queue_limit or 0,
        allowed_entrypoints=pool.allowed_entrypoints or [],
        default_queue=domain.default_queue(pool),
    )
    if pool.concurrency_limit is not None:
        message.concurrency_limit = pool.concurrency_limit
    return message


def queue_to_proto(queue: WorkQueueRow, pool_name: str, now: datetime | None = None) -> pools_pb2.WorkQueue:
    now = now or datetime.now(timezone.utc)
    message = pools_pb2.WorkQueue(
        id=queue.id,
        name=queue.name,
        pool=pool_name,
        priority=queue.priority,
        paused=queue.paused,
        status=common_pb2.Status.Value(domain.queue_status(queue, now)),
        description=queue.description,
        is_default=queue.is_default,
        created=to_timestamp(queue.created),
        updated=to_timestamp(queue.updated),
    )
    if queue.concurrency_limit is not None:
        message.concurrency_limit = queue.concurrency_limit
    if queue.last_polled is not None:
        message.last_polled.CopyFrom(to_timestamp(queue.last_polled))
    return message


def optional(message, field: str):  # type: ignore[no-untyped-def]
    """The value of a proto3 `optional` field, or None when unset."""
    return getattr(message, field) if message.HasField(field) else None
