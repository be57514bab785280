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

class WorkPool(_message.Message):
    __slots__ = ("id", "name", "type", "description", "paused", "concurrency_limit", "status", "base_job_template", "created", "updated", "queues", "worker_queue_limit", "allowed_entrypoints", "default_queue")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BASE_JOB_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    WORKER_QUEUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENTRYPOINTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_QUEUE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    description: str
    paused: bool
    concurrency_limit: int
    status: _common_pb2.Status
    base_job_template: _struct_pb2.Struct
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    queues: _containers.RepeatedScalarFieldContainer[str]
    worker_queue_limit: int
    allowed_entrypoints: _containers.RepeatedScalarFieldContainer[str]
    default_queue: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., paused: _Optional[bool] = ..., concurrency_limit: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., base_job_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queues: _Optional[_Iterable[str]] = ..., worker_queue_limit: _Optional[int] = ..., allowed_entrypoints: _Optional[_Iterable[str]] = ..., default_queue: _Optional[str] = ...) -> None: ...

class WorkQueue(_message.Message):
    __slots__ = ("id", "name", "pool", "priority", "concurrency_limit", "paused", "status", "description", "last_polled", "created", "updated", "is_default", "late_runs", "last_served")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LAST_POLLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LATE_RUNS_FIELD_NUMBER: _ClassVar[int]
    LAST_SERVED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    pool: str
    priority: int
    concurrency_limit: int
    paused: bool
    status: _common_pb2.Status
    description: str
    last_polled: _timestamp_pb2.Timestamp
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    is_default: bool
    late_runs: int
    last_served: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., pool: _Optional[str] = ..., priority: _Optional[int] = ..., concurrency_limit: _Optional[int] = ..., paused: _Optional[bool] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., description: _Optional[str] = ..., last_polled: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_default: _Optional[bool] = ..., late_runs: _Optional[int] = ..., last_served: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWorkPoolRequest(_message.Message):
    __slots__ = ("name", "type", "description", "paused", "concurrency_limit", "base_job_template", "worker_queue_limit", "allowed_entrypoints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BASE_JOB_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_QUEUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENTRYPOINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    paused: bool
    concurrency_limit: int
    base_job_template: _struct_pb2.Struct
    worker_queue_limit: int
    allowed_entrypoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., paused: _Optional[bool] = ..., concurrency_limit: _Optional[int] = ..., base_job_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., worker_queue_limit: _Optional[int] = ..., allowed_entrypoints: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkPoolRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListWorkPoolsRequest(_message.Message):
    __slots__ = ("limit", "offset")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListWorkPoolsResponse(_message.Message):
    __slots__ = ("work_pools",)
    WORK_POOLS_FIELD_NUMBER: _ClassVar[int]
    work_pools: _containers.RepeatedCompositeFieldContainer[WorkPool]
    def __init__(self, work_pools: _Optional[_Iterable[_Union[WorkPool, _Mapping]]] = ...) -> None: ...

class UpdateWorkPoolRequest(_message.Message):
    __slots__ = ("name", "description", "concurrency_limit", "base_job_template", "worker_queue_limit", "allowed_entrypoints", "clear_allowed_entrypoints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    BASE_JOB_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_QUEUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENTRYPOINTS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ALLOWED_ENTRYPOINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    concurrency_limit: int
    base_job_template: _struct_pb2.Struct
    worker_queue_limit: int
    allowed_entrypoints: _containers.RepeatedScalarFieldContainer[str]
    clear_allowed_entrypoints: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., base_job_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., worker_queue_limit: _Optional[int] = ..., allowed_entrypoints: _Optional[_Iterable[str]] = ..., clear_allowed_entrypoints: _Optional[bool] = ...) -> None: ...

class SetWorkPoolConcurrencyLimitRequest(_message.Message):
    __slots__ = ("name", "concurrency_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    concurrency_limit: int
    def __init__(self, name: _Optional[str] = ..., concurrency_limit: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateWorkQueueRequest(_message.Message):
    __slots__ = ("name", "pool", "priority", "concurrency_limit", "description", "paused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    priority: int
    concurrency_limit: int
    description: str
    paused: bool
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., priority: _Optional[int] = ..., concurrency_limit: _Optional[int] = ..., description: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class WorkQueueRef(_message.Message):
    __slots__ = ("name", "pool", "without_health")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_HEALTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    without_health: bool
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., without_health: _Optional[bool] = ...) -> None: ...

class ListWorkQueuesRequest(_message.Message):
    __slots__ = ("pool", "limit", "offset")
    POOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    pool: str
    limit: int
    offset: int
    def __init__(self, pool: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListWorkQueuesResponse(_message.Message):
    __slots__ = ("work_queues",)
    WORK_QUEUES_FIELD_NUMBER: _ClassVar[int]
    work_queues: _containers.RepeatedCompositeFieldContainer[WorkQueue]
    def __init__(self, work_queues: _Optional[_Iterable[_Union[WorkQueue, _Mapping]]] = ...) -> None: ...

class UpdateWorkQueueRequest(_message.Message):
    __slots__ = ("name", "pool", "priority", "concurrency_limit", "description", "new_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    priority: int
    concurrency_limit: int
    description: str
    new_name: str
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., priority: _Optional[int] = ..., concurrency_limit: _Optional[int] = ..., description: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class SetWorkQueueConcurrencyLimitRequest(_message.Message):
    __slots__ = ("name", "concurrency_limit", "pool")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    name: str
    concurrency_limit: int
    pool: str
    def __init__(self, name: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., pool: _Optional[str] = ...) -> None: ...

class EnsureWorkQueuesRequest(_message.Message):
    __slots__ = ("pool", "names", "worker_key")
    POOL_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    WORKER_KEY_FIELD_NUMBER: _ClassVar[int]
    pool: str
    names: _containers.RepeatedScalarFieldContainer[str]
    worker_key: str
    def __init__(self, pool: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., worker_key: _Optional[str] = ...) -> None: ...

class MarkPolledRequest(_message.Message):
    __slots__ = ("pool", "names")
    POOL_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    pool: str
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pool: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class MarkPolledResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("pool", "initial")
    POOL_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    pool: str
    initial: bool
    def __init__(self, pool: _Optional[str] = ..., initial: _Optional[bool] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "pool", "queue", "at", "renamed_from")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchEvent.Kind]
        CREATED: _ClassVar[WatchEvent.Kind]
        UPDATED: _ClassVar[WatchEvent.Kind]
        DELETED: _ClassVar[WatchEvent.Kind]
        SYNCED: _ClassVar[WatchEvent.Kind]
    KIND_UNSPECIFIED: WatchEvent.Kind
    CREATED: WatchEvent.Kind
    UPDATED: WatchEvent.Kind
    DELETED: WatchEvent.Kind
    SYNCED: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    RENAMED_FROM_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    pool: WorkPool
    queue: WorkQueue
    at: _timestamp_pb2.Timestamp
    renamed_from: str
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., pool: _Optional[_Union[WorkPool, _Mapping]] = ..., queue: _Optional[_Union[WorkQueue, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renamed_from: _Optional[str] = ...) -> None: ...
