from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    READY: _ClassVar[Status]
    NOT_READY: _ClassVar[Status]
    PAUSED: _ClassVar[Status]

class Access(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_UNSPECIFIED: _ClassVar[Access]
    ACCESS_ADMIN: _ClassVar[Access]
    ACCESS_OPERATOR: _ClassVar[Access]
    ACCESS_WORKER: _ClassVar[Access]
    ACCESS_MESH: _ClassVar[Access]
STATUS_UNSPECIFIED: Status
READY: Status
NOT_READY: Status
PAUSED: Status
ACCESS_UNSPECIFIED: Access
ACCESS_ADMIN: Access
ACCESS_OPERATOR: Access
ACCESS_WORKER: Access
ACCESS_MESH: Access
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
RUN_TOKEN_FIELD_NUMBER: _ClassVar[int]
run_token: _descriptor.FieldDescriptor
