from google.protobuf import struct_pb2 as _struct_pb2
from shiftboss.v1 import cli_pb2 as _cli_pb2
from shiftboss.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetDefaultBaseJobTemplateRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class BaseJobTemplate(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: _struct_pb2.Struct
    def __init__(self, template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ValidateTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: _struct_pb2.Struct
    def __init__(self, template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ValidateTemplateResponse(_message.Message):
    __slots__ = ("variables", "placeholders")
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDERS_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.RepeatedScalarFieldContainer[str]
    placeholders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, variables: _Optional[_Iterable[str]] = ..., placeholders: _Optional[_Iterable[str]] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("pool", "template", "deployment_variables", "run_variables", "leave_required")
    POOL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    RUN_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    LEAVE_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    pool: str
    template: _struct_pb2.Struct
    deployment_variables: _struct_pb2.Struct
    run_variables: _struct_pb2.Struct
    leave_required: bool
    def __init__(self, pool: _Optional[str] = ..., template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., deployment_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., run_variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., leave_required: _Optional[bool] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("job_configuration", "values", "secret_variables")
    JOB_CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SECRET_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    job_configuration: _struct_pb2.Struct
    values: _struct_pb2.Struct
    secret_variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_configuration: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., secret_variables: _Optional[_Iterable[str]] = ...) -> None: ...
