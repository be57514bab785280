import datetime

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

class WorkerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATUS_UNSPECIFIED: _ClassVar[WorkerStatus]
    ONLINE: _ClassVar[WorkerStatus]
    OFFLINE: _ClassVar[WorkerStatus]
WORKER_STATUS_UNSPECIFIED: WorkerStatus
ONLINE: WorkerStatus
OFFLINE: WorkerStatus

class Worker(_message.Message):
    __slots__ = ("id", "name", "pool", "type", "queues", "status", "last_heartbeat", "created", "in_flight", "limit", "heartbeat_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    pool: str
    type: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    status: WorkerStatus
    last_heartbeat: _timestamp_pb2.Timestamp
    created: _timestamp_pb2.Timestamp
    in_flight: int
    limit: int
    heartbeat_seconds: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., pool: _Optional[str] = ..., type: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[WorkerStatus, str]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_flight: _Optional[int] = ..., limit: _Optional[int] = ..., heartbeat_seconds: _Optional[float] = ...) -> None: ...

class WorkerBeat(_message.Message):
    __slots__ = ("id", "name", "pool", "type", "queues", "in_flight", "limit", "heartbeat_seconds", "at", "gone")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    pool: str
    type: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    in_flight: int
    limit: int
    heartbeat_seconds: float
    at: _timestamp_pb2.Timestamp
    gone: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., pool: _Optional[str] = ..., type: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., in_flight: _Optional[int] = ..., limit: _Optional[int] = ..., heartbeat_seconds: _Optional[float] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gone: _Optional[bool] = ...) -> None: ...

class BeatRequest(_message.Message):
    __slots__ = ("beats",)
    BEATS_FIELD_NUMBER: _ClassVar[int]
    beats: _containers.RepeatedCompositeFieldContainer[WorkerBeat]
    def __init__(self, beats: _Optional[_Iterable[_Union[WorkerBeat, _Mapping]]] = ...) -> None: ...

class RefusedBeat(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BeatResponse(_message.Message):
    __slots__ = ("refused",)
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    refused: _containers.RepeatedCompositeFieldContainer[RefusedBeat]
    def __init__(self, refused: _Optional[_Iterable[_Union[RefusedBeat, _Mapping]]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("pool", "limit", "offset")
    POOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    pool: str
    limit: int
    offset: int
    def __init__(self, pool: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class WorkerRef(_message.Message):
    __slots__ = ("name", "pool")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ...) -> None: ...

class DeleteWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountOnlineRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountOnlineResponse(_message.Message):
    __slots__ = ("online",)
    class OnlineEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    online: _containers.ScalarMap[str, int]
    def __init__(self, online: _Optional[_Mapping[str, int]] = ...) -> None: ...

class WatchWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerEvent(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...
