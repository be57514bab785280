"""Tables of HeartbeatService."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiftboss.services.db import naming


class HeartbeatsBase(DeclarativeBase):
    metadata = naming()


class WorkerRow(HeartbeatsBase):
    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("pool", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    pool: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(64), default="")
    queues: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="ONLINE")
    last_heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    limit: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_seconds: Mapped[float] = mapped_column(Float, default=30.0)
