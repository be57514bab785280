"""Tables of SchedulerService."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shiftboss.services.db import naming


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class SchedulerBase(DeclarativeBase):
    metadata = naming()


class DeploymentRow(SchedulerBase):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    entrypoint: Mapped[str] = mapped_column(Text)
    pool: Mapped[str] = mapped_column(String(255), index=True)
    queue: Mapped[str] = mapped_column(String(255))
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    job_variables: Mapped[dict] = mapped_column(JSON, default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now_utc)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now_utc)
    #: Times a run that FAILED or CRASHED is scheduled again, and the seconds in between.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_delay_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")

    schedules: Mapped[list[ScheduleRow]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", lazy="selectin", order_by="ScheduleRow.created"
    )


class ScheduleRow(SchedulerBase):
    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    cron: Mapped[str] = mapped_column(String(255), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    interval_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    rrule: Mapped[str] = mapped_column(Text, default="", server_default="")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    anchor: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now_utc)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now_utc)

    deployment: Mapped[DeploymentRow] = relationship(back_populates="schedules")


class FlowRunRow(SchedulerBase):
    __tablename__ = "flow_runs"
    __table_args__ = (
        Index("ix_flow_runs_pool_state", "pool", "state"),
        Index("ix_flow_runs_worker_state", "worker", "state"),
    )

    #: Creation order, and the run's key in the scheduling core.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    deployment: Mapped[str] = mapped_column(String(255), default="")
    pool: Mapped[str] = mapped_column(String(255))
    queue: Mapped[str] = mapped_column(String(255))
    entrypoint: Mapped[str] = mapped_column(Text, default="")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    job_variables: Mapped[dict] = mapped_column(JSON, default=dict)
    job_configuration: Mapped[dict] = mapped_column(JSON, default=dict)
    scheduled_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default="SCHEDULED")
    message: Mapped[str] = mapped_column(Text, default="")
    #: Worker (pool/name) holding the run while PENDING, RUNNING or CANCELLING.
    worker: Mapped[str] = mapped_column(String(255), default="")
    #: Fencing token: raised at every dispatch, so a stale holder's messages are refused.
    lease: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Schedule id and slot, for runs made by a schedule: never two runs for one slot.
    slot: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now_utc)
    dispatched: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: W3C trace context of the request that created the run: admission and dispatch, which
    #: happen after that request returned, continue its trace. Empty when it had none.
    traceparent: Mapped[str] = mapped_column(String(55), default="", server_default="")
    #: The caller's key for the call that made it (CreateFlowRun, RunDeployment): a call
    #: retried with the same key answers this run rather than making another.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    #: Times it is scheduled again after failing or crashing, and the seconds in between.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_delay_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    #: Times it has gone RUNNING: its attempts.
    run_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The state's name where it is not its type's (AwaitingRetry), as Prefect names states.
    state_name: Mapped[str] = mapped_column(String(32), default="", server_default="")


@dataclass(slots=True, eq=False)
class FlowRunDraft:
    """A flow run about to be inserted (see hot.insert_runs): every column of flow_runs as
    a plain object, many times cheaper to make than a FlowRunRow on the creation path; the
    insert sets `seq`."""

    id: str
    name: str
    deployment_id: str | None
    deployment: str
    pool: str
    queue: str
    entrypoint: str
    parameters: dict[str, Any]
    job_variables: dict[str, Any]
    job_configuration: dict[str, Any]
    scheduled_start: datetime
    state: str
    created: datetime
    slot: str | None = None
    idempotency_key: str | None = None
    message: str = ""
    worker: str = ""
    lease: int = 0
    lease_expires: datetime | None = None
    exit_code: int | None = None
    dispatched: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    traceparent: str = ""
    retries: int = 0
    retry_delay_seconds: float = 0.0
    run_count: int = 0
    state_name: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class RunShape:
    """What the runs of one deployment, queue and set of job variables share: made once."""

    queue: str
    #: The run's job variables as stored (secrets sealed).
    job_variables: dict[str, Any]
    #: The rendered job configuration as stored (sealed whole when it holds secrets).
    job_configuration: dict[str, Any]


class StateChangeRow(SchedulerBase):
    __tablename__ = "flow_run_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_seq: Mapped[int] = mapped_column(ForeignKey("flow_runs.seq", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str] = mapped_column(Text, default="")


class LogRow(SchedulerBase):
    __tablename__ = "flow_run_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_seq: Mapped[int] = mapped_column(ForeignKey("flow_runs.seq", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stream: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
