"""Tables of PoolService."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shiftboss.services.db import naming


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _uuid() -> str:
    return str(uuid.uuid4())


class PoolsBase(DeclarativeBase):
    metadata = naming()


class WorkPoolRow(PoolsBase):
    __tablename__ = "work_pools"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_job_template: Mapped[dict] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    #: Worker keys may add queues by naming them while the pool has fewer than this; 0: none.
    worker_queue_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: How many queues the pool has, kept with every create and delete: a queue is added
    #: without counting (or loading) the others.
    queue_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The entrypoints the pool's deployments may use (shiftboss.entrypoints); empty: any.
    allowed_entrypoints: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")

    queues: Mapped[list[WorkQueueRow]] = relationship(
        back_populates="pool", cascade="all, delete-orphan", order_by="WorkQueueRow.priority", lazy="selectin"
    )


class WorkQueueRow(PoolsBase):
    __tablename__ = "work_queues"
    __table_args__ = (UniqueConstraint("pool_id", "name"), Index("ix_work_queues_pool_id_priority", "pool_id", "priority"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    pool_id: Mapped[str] = mapped_column(ForeignKey("work_pools.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    last_polled: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The pool's default queue (made with it as `default`; it stays the default when renamed).
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Its name before a rename that the scheduler's deployments and runs have not yet
    #: followed (cleared once they have): sent with the queue, so the rename is applied there
    #: even if this server stopped in between.
    renamed_from: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    pool: Mapped[WorkPoolRow] = relationship(back_populates="queues", lazy="joined")
