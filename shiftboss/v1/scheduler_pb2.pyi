import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from shiftboss.v1 import cli_pb2 as _cli_pb2
from shiftboss.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    SCHEDULED: _ClassVar[RunState]
    LATE: _ClassVar[RunState]
    PENDING: _ClassVar[RunState]
    RUNNING: _ClassVar[RunState]
    COMPLETED: _ClassVar[RunState]
    FAILED: _ClassVar[RunState]
    CRASHED: _ClassVar[RunState]
    CANCELLING: _ClassVar[RunState]
    CANCELLED: _ClassVar[RunState]
RUN_STATE_UNSPECIFIED: RunState
SCHEDULED: RunState
LATE: RunState
PENDING: RunState
RUNNING: RunState
COMPLETED: RunState
FAILED: RunState
CRASHED: RunState
CANCELLING: RunState
CANCELLED: RunState

class Schedule(_message.Message):
    __slots__ = ("id", "cron", "timezone", "interval_seconds", "paused", "anchor", "rrule")
    ID_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    RRULE_FIELD_NUMBER: _ClassVar[int]
    id: str
    cron: str
    timezone: str
    interval_seconds: float
    paused: bool
    anchor: _timestamp_pb2.Timestamp
    rrule: str
    def __init__(self, id: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., interval_seconds: _Optional[float] = ..., paused: _Optional[bool] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rrule: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "name", "entrypoint", "pool", "queue", "parameters", "job_variables", "schedules", "paused", "description", "tags", "created", "updated", "retries", "retry_delay_seconds", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    entrypoint: str
    pool: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    paused: bool
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    retries: int
    retry_delay_seconds: float
    status: _common_pb2.Status
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., entrypoint: _Optional[str] = ..., pool: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., paused: _Optional[bool] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("state", "at", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: RunState
    at: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class FlowRun(_message.Message):
    __slots__ = ("id", "name", "deployment", "pool", "queue", "parameters", "job_variables", "scheduled_start", "state", "history", "worker", "exit_code", "created", "entrypoint", "job_configuration", "message", "state_name", "run_count", "retries", "retry_delay_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_START_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    JOB_CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    deployment: str
    pool: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    scheduled_start: _timestamp_pb2.Timestamp
    state: RunState
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    worker: str
    exit_code: int
    created: _timestamp_pb2.Timestamp
    entrypoint: str
    job_configuration: _struct_pb2.Struct
    message: str
    state_name: str
    run_count: int
    retries: int
    retry_delay_seconds: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., deployment: _Optional[str] = ..., pool: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., scheduled_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[RunState, str]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., worker: _Optional[str] = ..., exit_code: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entrypoint: _Optional[str] = ..., job_configuration: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., message: _Optional[str] = ..., state_name: _Optional[str] = ..., run_count: _Optional[int] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("name", "pool", "entrypoint", "queue", "parameters", "job_variables", "cron", "timezone", "interval", "description", "tags", "paused", "rrule", "anchor_date", "retries", "retry_delay_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RRULE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_DATE_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    entrypoint: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    cron: str
    timezone: str
    interval: float
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    paused: bool
    rrule: str
    anchor_date: str
    retries: int
    retry_delay_seconds: float
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., entrypoint: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., interval: _Optional[float] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., paused: _Optional[bool] = ..., rrule: _Optional[str] = ..., anchor_date: _Optional[str] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class DeploymentRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("pool", "limit", "offset")
    POOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    pool: str
    limit: int
    offset: int
    def __init__(self, pool: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class UpdateDeploymentRequest(_message.Message):
    __slots__ = ("name", "entrypoint", "queue", "parameters", "job_variables", "description", "cron", "timezone", "interval", "clear_schedules", "rrule", "anchor_date", "retries", "retry_delay_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CLEAR_SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    RRULE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_DATE_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    entrypoint: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    description: str
    cron: str
    timezone: str
    interval: float
    clear_schedules: bool
    rrule: str
    anchor_date: str
    retries: int
    retry_delay_seconds: float
    def __init__(self, name: _Optional[str] = ..., entrypoint: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., interval: _Optional[float] = ..., clear_schedules: _Optional[bool] = ..., rrule: _Optional[str] = ..., anchor_date: _Optional[str] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class RunDeploymentRequest(_message.Message):
    __slots__ = ("name", "parameters", "job_variables", "start_in", "start_at", "queue", "idempotency_key", "retries", "retry_delay_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    START_IN_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    start_in: float
    start_at: str
    queue: str
    idempotency_key: str
    retries: int
    retry_delay_seconds: float
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., start_in: _Optional[float] = ..., start_at: _Optional[str] = ..., queue: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class CreateFlowRunRequest(_message.Message):
    __slots__ = ("deployment", "queue", "parameters", "job_variables", "start_in", "start_at", "idempotency_key", "retries", "retry_delay_seconds")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    START_IN_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    start_in: float
    start_at: str
    idempotency_key: str
    retries: int
    retry_delay_seconds: float
    def __init__(self, deployment: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., start_in: _Optional[float] = ..., start_at: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class CreateFlowRunsRequest(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[CreateFlowRunRequest]
    def __init__(self, runs: _Optional[_Iterable[_Union[CreateFlowRunRequest, _Mapping]]] = ...) -> None: ...

class CreateFlowRunsResponse(_message.Message):
    __slots__ = ("ids", "created")
    IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    created: int
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., created: _Optional[int] = ...) -> None: ...

class FlowRunRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListFlowRunsRequest(_message.Message):
    __slots__ = ("pool", "queue", "state", "deployment", "limit", "offset", "scheduled_after", "scheduled_before")
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AFTER_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    pool: str
    queue: str
    state: _containers.RepeatedScalarFieldContainer[RunState]
    deployment: str
    limit: int
    offset: int
    scheduled_after: str
    scheduled_before: str
    def __init__(self, pool: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[_Iterable[_Union[RunState, str]]] = ..., deployment: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., scheduled_after: _Optional[str] = ..., scheduled_before: _Optional[str] = ...) -> None: ...

class ListFlowRunsResponse(_message.Message):
    __slots__ = ("flow_runs",)
    FLOW_RUNS_FIELD_NUMBER: _ClassVar[int]
    flow_runs: _containers.RepeatedCompositeFieldContainer[FlowRun]
    def __init__(self, flow_runs: _Optional[_Iterable[_Union[FlowRun, _Mapping]]] = ...) -> None: ...

class SetFlowRunStateRequest(_message.Message):
    __slots__ = ("id", "state", "force", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: RunState
    force: bool
    message: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., force: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("id", "state", "pool", "queue", "queue_position", "pool_position", "blocker", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    POOL_POSITION_FIELD_NUMBER: _ClassVar[int]
    BLOCKER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: RunState
    pool: str
    queue: str
    queue_position: int
    pool_position: int
    blocker: str
    message: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., pool: _Optional[str] = ..., queue: _Optional[str] = ..., queue_position: _Optional[int] = ..., pool_position: _Optional[int] = ..., blocker: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PreviewRequest(_message.Message):
    __slots__ = ("pool", "hours", "queue")
    POOL_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    pool: str
    hours: float
    queue: str
    def __init__(self, pool: _Optional[str] = ..., hours: _Optional[float] = ..., queue: _Optional[str] = ...) -> None: ...

class PreviewQueueRequest(_message.Message):
    __slots__ = ("name", "pool", "hours")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    hours: float
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., hours: _Optional[float] = ...) -> None: ...

class PoolSlotsRequest(_message.Message):
    __slots__ = ("pool", "queue")
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    pool: str
    queue: str
    def __init__(self, pool: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class QueueSlotsRequest(_message.Message):
    __slots__ = ("name", "pool")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ...) -> None: ...

class Slots(_message.Message):
    __slots__ = ("flow_runs", "occupied", "limit")
    FLOW_RUNS_FIELD_NUMBER: _ClassVar[int]
    OCCUPIED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    flow_runs: _containers.RepeatedCompositeFieldContainer[FlowRun]
    occupied: int
    limit: int
    def __init__(self, flow_runs: _Optional[_Iterable[_Union[FlowRun, _Mapping]]] = ..., occupied: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class NextRunsRequest(_message.Message):
    __slots__ = ("pool", "queues", "limit", "prefetch_seconds")
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    pool: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    prefetch_seconds: float
    def __init__(self, pool: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., prefetch_seconds: _Optional[float] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("name", "pool", "queues", "type", "limit", "prefetch_seconds", "base_job_template", "holding", "once", "finished", "batches")
    class HoldingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BASE_JOB_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    HOLDING_FIELD_NUMBER: _ClassVar[int]
    ONCE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    type: str
    limit: int
    prefetch_seconds: float
    base_job_template: _struct_pb2.Struct
    holding: _containers.ScalarMap[str, int]
    once: bool
    finished: _containers.RepeatedCompositeFieldContainer[Finished]
    batches: bool
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., limit: _Optional[int] = ..., prefetch_seconds: _Optional[float] = ..., base_job_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., holding: _Optional[_Mapping[str, int]] = ..., once: _Optional[bool] = ..., finished: _Optional[_Iterable[_Union[Finished, _Mapping]]] = ..., batches: _Optional[bool] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("run", "lease")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("run", "lease", "at")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("run", "lease", "state", "exit_code", "message", "at")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    state: RunState
    exit_code: int
    message: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ..., state: _Optional[_Union[RunState, str]] = ..., exit_code: _Optional[int] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Credits(_message.Message):
    __slots__ = ("free",)
    FREE_FIELD_NUMBER: _ClassVar[int]
    free: int
    def __init__(self, free: _Optional[int] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("run", "at", "stream", "text")
    RUN_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    run: str
    at: _timestamp_pb2.Timestamp
    stream: str
    text: str
    def __init__(self, run: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class WriteLogsRequest(_message.Message):
    __slots__ = ("id", "lines")
    ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    id: str
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class WriteLogsResponse(_message.Message):
    __slots__ = ("written",)
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    written: int
    def __init__(self, written: _Optional[int] = ...) -> None: ...

class WatchFlowRunRequest(_message.Message):
    __slots__ = ("id", "no_logs")
    ID_FIELD_NUMBER: _ClassVar[int]
    NO_LOGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    no_logs: bool
    def __init__(self, id: _Optional[str] = ..., no_logs: _Optional[bool] = ...) -> None: ...

class FlowRunEvent(_message.Message):
    __slots__ = ("run", "at", "kind", "state", "text", "stream", "exit_code")
    RUN_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    run: str
    at: _timestamp_pb2.Timestamp
    kind: str
    state: RunState
    text: str
    stream: str
    exit_code: int
    def __init__(self, run: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., text: _Optional[str] = ..., stream: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[WorkerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[WorkerMessage, _Mapping]]] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "ack", "started", "finished", "credits", "logs", "batch", "goodbye")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    ack: Ack
    started: Started
    finished: Finished
    credits: Credits
    logs: LogBatch
    batch: WorkerBatch
    goodbye: Goodbye
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., credits: _Optional[_Union[Credits, _Mapping]] = ..., logs: _Optional[_Union[LogBatch, _Mapping]] = ..., batch: _Optional[_Union[WorkerBatch, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("worker_id", "heartbeat_seconds", "queues", "pool_type", "replicas", "ping_seconds")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    POOL_TYPE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_seconds: float
    queues: _containers.RepeatedScalarFieldContainer[str]
    pool_type: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    ping_seconds: float
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_seconds: _Optional[float] = ..., queues: _Optional[_Iterable[str]] = ..., pool_type: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ..., ping_seconds: _Optional[float] = ...) -> None: ...

class Dispatch(_message.Message):
    __slots__ = ("run", "lease", "scheduled_start", "job_configuration", "entrypoint", "parameters", "deployment", "queue", "name", "traceparent", "run_token", "masked", "allowed_entrypoints")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_START_FIELD_NUMBER: _ClassVar[int]
    JOB_CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    RUN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENTRYPOINTS_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    scheduled_start: _timestamp_pb2.Timestamp
    job_configuration: _struct_pb2.Struct
    entrypoint: str
    parameters: _struct_pb2.Struct
    deployment: str
    queue: str
    name: str
    traceparent: str
    run_token: str
    masked: _containers.RepeatedScalarFieldContainer[str]
    allowed_entrypoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ..., scheduled_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job_configuration: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., entrypoint: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., deployment: _Optional[str] = ..., queue: _Optional[str] = ..., name: _Optional[str] = ..., traceparent: _Optional[str] = ..., run_token: _Optional[str] = ..., masked: _Optional[_Iterable[str]] = ..., allowed_entrypoints: _Optional[_Iterable[str]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("run", "lease")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Settled(_message.Message):
    __slots__ = ("run", "lease")
    RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    run: str
    lease: int
    def __init__(self, run: _Optional[str] = ..., lease: _Optional[int] = ...) -> None: ...

class Refused(_message.Message):
    __slots__ = ("run", "reason", "lease")
    RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    run: str
    reason: str
    lease: int
    def __init__(self, run: _Optional[str] = ..., reason: _Optional[str] = ..., lease: _Optional[int] = ...) -> None: ...

class Redirect(_message.Message):
    __slots__ = ("address", "reason", "replicas")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    address: str
    reason: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, address: _Optional[str] = ..., reason: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class SchedulerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SchedulerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[SchedulerMessage, _Mapping]]] = ...) -> None: ...

class SchedulerMessage(_message.Message):
    __slots__ = ("welcome", "dispatch", "cancel", "drain", "refused", "settled", "batch", "redirect")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    dispatch: Dispatch
    cancel: Cancel
    drain: Drain
    refused: Refused
    settled: Settled
    batch: SchedulerBatch
    redirect: Redirect
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., dispatch: _Optional[_Union[Dispatch, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., refused: _Optional[_Union[Refused, _Mapping]] = ..., settled: _Optional[_Union[Settled, _Mapping]] = ..., batch: _Optional[_Union[SchedulerBatch, _Mapping]] = ..., redirect: _Optional[_Union[Redirect, _Mapping]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("id", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    follow: bool
    def __init__(self, id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScheduleSpec(_message.Message):
    __slots__ = ("cron", "timezone", "interval", "paused", "rrule", "anchor_date")
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RRULE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_DATE_FIELD_NUMBER: _ClassVar[int]
    cron: str
    timezone: str
    interval: float
    paused: bool
    rrule: str
    anchor_date: str
    def __init__(self, cron: _Optional[str] = ..., timezone: _Optional[str] = ..., interval: _Optional[float] = ..., paused: _Optional[bool] = ..., rrule: _Optional[str] = ..., anchor_date: _Optional[str] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ("name", "entrypoint", "pool", "queue", "parameters", "job_variables", "schedules", "description", "tags", "paused", "retries", "retry_delay_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    JOB_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    entrypoint: str
    pool: str
    queue: str
    parameters: _struct_pb2.Struct
    job_variables: _struct_pb2.Struct
    schedules: _containers.RepeatedCompositeFieldContainer[ScheduleSpec]
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    paused: bool
    retries: int
    retry_delay_seconds: float
    def __init__(self, name: _Optional[str] = ..., entrypoint: _Optional[str] = ..., pool: _Optional[str] = ..., queue: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., job_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., schedules: _Optional[_Iterable[_Union[ScheduleSpec, _Mapping]]] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., paused: _Optional[bool] = ..., retries: _Optional[int] = ..., retry_delay_seconds: _Optional[float] = ...) -> None: ...

class ApplyDeploymentsRequest(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentSpec]
    def __init__(self, deployments: _Optional[_Iterable[_Union[DeploymentSpec, _Mapping]]] = ...) -> None: ...

class AppliedDeployment(_message.Message):
    __slots__ = ("action", "deployment")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    action: str
    deployment: Deployment
    def __init__(self, action: _Optional[str] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ApplyDeploymentsResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: _containers.RepeatedCompositeFieldContainer[AppliedDeployment]
    def __init__(self, applied: _Optional[_Iterable[_Union[AppliedDeployment, _Mapping]]] = ...) -> None: ...

class PoolUsageRequest(_message.Message):
    __slots__ = ("pool", "queue")
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    pool: str
    queue: str
    def __init__(self, pool: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class PoolUsage(_message.Message):
    __slots__ = ("in_flight", "waiting", "deployments", "late", "last_dispatched")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    LAST_DISPATCHED_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    waiting: int
    deployments: _containers.RepeatedScalarFieldContainer[str]
    late: int
    last_dispatched: _timestamp_pb2.Timestamp
    def __init__(self, in_flight: _Optional[int] = ..., waiting: _Optional[int] = ..., deployments: _Optional[_Iterable[str]] = ..., late: _Optional[int] = ..., last_dispatched: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RenameWorkQueueRequest(_message.Message):
    __slots__ = ("pool", "name", "new_name")
    POOL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    pool: str
    name: str
    new_name: str
    def __init__(self, pool: _Optional[str] = ..., name: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class RenameWorkQueueResponse(_message.Message):
    __slots__ = ("deployments", "runs")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    deployments: int
    runs: int
    def __init__(self, deployments: _Optional[int] = ..., runs: _Optional[int] = ...) -> None: ...
