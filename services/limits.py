"""Limits against abuse: documents too large and workers that flood their stream. Each is refused with a status that names the limit, never by
taking the server down."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc import aio

from shiftboss.errors import InvalidArgument
from shiftboss.services.interceptors import WrapCache, rewrap

__all__ = ["DocumentLimitInterceptor", "MessageBudget", "refuse"]

_LEAVES = {"google.protobuf.Timestamp", "google.protobuf.Duration"}
_STRING = FieldDescriptor.TYPE_STRING
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def refuse(message: Message, limit: int, prefix: str = "") -> InvalidArgument | None:
    """What is wrong with a request beyond what its type says: a document (Struct) over
    `limit` bytes or holding a number that is not finite, an enum number the contract does
    not define, a NUL in text (no database stores one in a text column), a number that is
    not finite."""
    for field, value in message.ListFields():
        repeated = field.is_repeated
        kind = field.type
        if kind == _STRING:
            for index, text in enumerate(value if repeated else [value]):
                if "\x00" in text:
                    name = f"{prefix}{field.name}" + (f"[{index}]" if repeated else "")
                    return InvalidArgument(f"{name}: holds a NUL character", field=name)
            continue
        if kind in _FLOATS:
            for number in value if repeated else [value]:
                if not math.isfinite(number):
                    return InvalidArgument(f"{prefix}{field.name}: must be a finite number, got {number}", field=prefix + field.name)
            continue
        if field.enum_type is not None:
            for number in value if repeated else [value]:
                if field.enum_type.values_by_number.get(number) is None:
                    return InvalidArgument(
                        f"{prefix}{field.name}: {number} is not a {field.enum_type.name}", field=prefix + field.name
                    )
            continue
        kind = field.message_type
        if kind is None or kind.full_name in _LEAVES:
            continue
        if kind.GetOptions().map_entry:
            for key in value:
                if isinstance(key, str) and "\x00" in key:
                    return InvalidArgument(f"{prefix}{field.name}: a key holds a NUL character", field=prefix + field.name)
            continue
        for index, item in enumerate(value if repeated else [value]):
            name = f"{prefix}{field.name}" + (f"[{index}]" if repeated else "")
            if kind.full_name == "google.protobuf.Struct":
                size = item.ByteSize()
                if size > limit:
                    return InvalidArgument(
                        f"{name}: {size} bytes is over the limit of {limit} bytes (SHIFTBOSS_MAX_DOCUMENT_BYTES)", field=name
                    )
                where = _not_finite(item.fields, name)
                if where is not None:
                    return InvalidArgument(f"{where}: must be a finite number (JSON has no NaN or Infinity)", field=name)
            else:
                found = refuse(item, limit, name + ".")
                if found:
                    return found
    return None


def _not_finite(fields: Any, path: str) -> str | None:
    """The path of the first number in a document that is NaN or infinite, if any."""
    stack: list[tuple[Any, str]] = [(fields, path)]
    while stack:
        node, where = stack.pop()
        items = node.items() if hasattr(node, "items") else enumerate(node)
        for key, value in items:
            which = value.WhichOneof("kind")
            if which == "number_value":
                if not math.isfinite(value.number_value):
                    return f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
            elif which == "struct_value":
                stack.append((value.struct_value.fields, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"))
            elif which == "list_value":
                stack.append((value.list_value.values, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"))
    return None


class DocumentLimitInterceptor(aio.ServerInterceptor):
    """Refuses a request holding a document over `max_document_bytes` (parameters, job
    variables, templates) or an undefined enum number, naming the field, before any
    servicer sees it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        return self._wrapped.get(handler_call_details.method, handler, self._build)

    def _build(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        limit = self.limit

        def check(request: Any) -> None:
            if isinstance(request, Message):
                problem = refuse(request, limit)
                if problem is not None:
                    raise problem

        def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def limited(request: Any, context: aio.ServicerContext) -> Any:
                check(request)
                return await behavior(request, context)

            return limited

        def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
            async def limited(request: Any, context: aio.ServicerContext) -> Any:
                check(request)
                async for reply in behavior(request, context):
                    yield reply

            return limited

        return rewrap(handler, unary, stream)


class MessageBudget:
    """A token bucket: `rate` messages per second, bursts of twice that; 0 means no limit."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, 2 * rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, count: int = 1) -> bool:
        if self.rate <= 0:  # no limit
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < count:
            return False
        self.tokens -= count
        return True
