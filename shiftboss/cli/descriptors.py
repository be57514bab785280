"""What the CLI reads from the proto contracts: services, their CLI options, their comments."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from shiftboss.v1 import cli_pb2

#: Generated modules whose services become commands.
PROTO_MODULES = ("pools_pb2", "templates_pb2", "heartbeats_pb2", "scheduler_pb2", "keys_pb2")


@dataclass(frozen=True, slots=True)
class Command:
    service: ServiceDescriptor
    method: MethodDescriptor
    options: cli_pb2.CliCommand
    help: str


@functools.cache
def _comments() -> dict[tuple[str, tuple[int, ...]], str]:
    """Leading comments of every element, keyed by (file, source path)."""
    data = resources.files("shiftboss.v1").joinpath("descriptors.binpb").read_bytes()
    found: dict[tuple[str, tuple[int, ...]], str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        for location in file.source_code_info.location:
            if location.leading_comments:
                found[(file.name, tuple(location.path))] = " ".join(location.leading_comments.split())
    return found


def method_help(method: MethodDescriptor) -> str:
    service = method.containing_service
    path = (6, service.index, 2, method.index)
    return _comments().get((service.file.name, path), "")


def _message_path(message: Descriptor) -> tuple[int, ...]:
    """The source-info path of a message: (4, index) at top level, then (3, index) per nesting."""
    if message.containing_type is None:
        return (4, list(message.file.message_types_by_name.values()).index(message))
    return (*_message_path(message.containing_type), 3, message.containing_type.nested_types.index(message))


def field_help(field: FieldDescriptor) -> str:
    message = field.containing_type
    path = (*_message_path(message), 2, field.index)
    return _comments().get((message.file.name, path), "")


def commands() -> list[Command]:
    import importlib

    found: list[Command] = []
    for module_name in PROTO_MODULES:
        module = importlib.import_module(f"shiftboss.v1.{module_name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions().Extensions[cli_pb2.cli]
                if options.path:
                    found.append(Command(service, method, options, method_help(method)))
    return found


def arg_options(field: FieldDescriptor) -> cli_pb2.CliArg:
    return field.GetOptions().Extensions[cli_pb2.arg]
