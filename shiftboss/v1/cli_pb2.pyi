from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
CLI_FIELD_NUMBER: _ClassVar[int]
cli: _descriptor.FieldDescriptor
ARG_FIELD_NUMBER: _ClassVar[int]
arg: _descriptor.FieldDescriptor

class CliCommand(_message.Message):
    __slots__ = ("path", "items", "columns", "done", "json_output", "title", "document", "line", "watch", "secret", "bulk")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    JSON_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    BULK_FIELD_NUMBER: _ClassVar[int]
    path: str
    items: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    done: str
    json_output: bool
    title: str
    document: str
    line: str
    watch: str
    secret: str
    bulk: str
    def __init__(self, path: _Optional[str] = ..., items: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., done: _Optional[str] = ..., json_output: _Optional[bool] = ..., title: _Optional[str] = ..., document: _Optional[str] = ..., line: _Optional[str] = ..., watch: _Optional[str] = ..., secret: _Optional[str] = ..., bulk: _Optional[str] = ...) -> None: ...

class CliArg(_message.Message):
    __slots__ = ("positional", "flag", "short", "file", "json", "hidden", "key_value", "bulk_as")
    POSITIONAL_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    KEY_VALUE_FIELD_NUMBER: _ClassVar[int]
    BULK_AS_FIELD_NUMBER: _ClassVar[int]
    positional: bool
    flag: str
    short: str
    file: bool
    json: bool
    hidden: bool
    key_value: bool
    bulk_as: str
    def __init__(self, positional: _Optional[bool] = ..., flag: _Optional[str] = ..., short: _Optional[str] = ..., file: _Optional[bool] = ..., json: _Optional[bool] = ..., hidden: _Optional[bool] = ..., key_value: _Optional[bool] = ..., bulk_as: _Optional[str] = ...) -> None: ...
