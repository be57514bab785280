"""Server interceptors: the one place where domain errors become gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from shiftboss.errors import Internal, InvalidArgument, ShiftbossError
from shiftboss.services.db_errors import database_error

log = logging.getLogger("shiftboss.server")


async def abort(context: aio.ServicerContext, exc: ShiftbossError) -> None:
    """End the call with the error's status code and message (raises gRPC's AbortError).

    A peer's UNKNOWN (the base class carries it) is passed on as INTERNAL: a client never
    gets UNKNOWN."""
    code = "INTERNAL" if exc.code == "UNKNOWN" else exc.code
    await context.abort(grpc.StatusCode[code], exc.message)


def fault(exc: Exception, method: str) -> ShiftbossError:
    """The typed error for an exception a servicer did not expect: a database failure says
    what it means for the caller; anything else is our bug, logged with its traceback and
    answered INTERNAL without its text (which may hold other callers' data)."""
    known = database_error(exc)
    if known is not None:
        return known
    log.error("%s failed", method, exc_info=exc)
    return Internal(f"{method.rsplit('/', 1)[-1]}: the server failed; its log says why")


def checked(request: Any, streaming: bool) -> Any:
    """The request, or for a client stream the requests, refusing a Malformed one."""
    if streaming:
        return _checked_stream(request)
    if isinstance(request, Malformed):
        raise request.error()
    return request


async def _checked_stream(requests: Any) -> Any:
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error()
        yield request


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], streaming: bool) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await behavior(checked(request, streaming), context)
        except ShiftbossError as exc:
            await abort(context, exc)

    return handler


def _wrap_stream(behavior: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        try:
            async for reply in behavior(checked(request, streaming), context):
                yield reply
        except ShiftbossError as exc:
            await abort(context, exc)

    return handler


class Malformed:
    """Stands in for a request whose bytes are not a valid message of its type."""

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name = type_name
        self.reason = reason

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"request: not a valid {self.type_name} message ({self.reason})", field="request")


def tolerant(deserializer: Callable[[bytes], Any] | None, type_name: str) -> Callable[[bytes], Any] | None:
    """A deserializer that hands bad bytes to the servicer's wrapper as Malformed, which
    answers INVALID_ARGUMENT, instead of letting gRPC answer INTERNAL."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return Malformed(type_name, str(exc) or type(exc).__name__)

    return parse


def rewrap(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Callable[..., Any]], Callable[..., Any]],
    stream: Callable[[Callable[..., Any]], Callable[..., Any]],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same handler with its behavior wrapped: `unary` for calls answered once, `stream`
    for calls answered by a stream; and its request deserializer replaced, if given."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, stream),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, unary),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream),
    )
    for attribute, make, wrap in kinds:
        behavior = getattr(handler, attribute)
        if behavior:
            return make(wrap(behavior), deserializer or handler.request_deserializer, handler.response_serializer)
    return handler


class WrapCache:
    """Each method's wrapped handler, built once: gRPC hands an interceptor the same inner
    handler for a method on every call, so wrapping it again per call (closures, a new
    handler) is work thrown away. A different inner handler replaces the entry, so the
    cache holds one entry per method whatever the interceptors around it do."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self, method: str, handler: grpc.RpcMethodHandler, build: Callable[[grpc.RpcMethodHandler], grpc.RpcMethodHandler]
    ) -> grpc.RpcMethodHandler:
        entry = self._entries.get(method)
        if entry is not None and entry[0] is handler:
            return entry[1]
        wrapped = build(handler)
        self._entries[method] = (handler, wrapped)
        return wrapped


class ErrorInterceptor(aio.ServerInterceptor):
    """Turn a raised ShiftbossError into its status code and message; never UNKNOWN.

    A subclass can wrap each call further in the same step (`wrappers`): the tracing
    interceptor (services/tracing.py) does, so that a call pays for one wrapper, not two."""

    def __init__(self) -> None:
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        def build(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
            unary, stream = self.wrappers(method, handler.request_streaming)
            return rewrap(handler, unary, stream, tolerant(handler.request_deserializer, method.rsplit("/", 1)[-1] + " request"))

        return self._wrapped.get(method, handler, build)

    def wrappers(
        self, method: str, streaming: bool
    ) -> tuple[Callable[[Callable[..., Any]], Callable[..., Any]], Callable[[Callable[..., Any]], Callable[..., Any]]]:
        """What wraps the behavior of `method` when answered once, and when answered by a
        stream (built once per method: see WrapCache)."""
        return (lambda behavior: _wrap_unary(behavior, streaming)), (lambda behavior: _wrap_stream(behavior, streaming))


class FaultInterceptor(aio.ServerInterceptor):
    """Innermost: what a servicer raises that is not a ShiftbossError becomes one (see
    `fault`), so the error interceptor, or the tracing one in its place, maps every failure
    to a precise code; gRPC would answer UNKNOWN with the exception's text."""

    def __init__(self) -> None:
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return self._wrapped.get(method, handler, lambda handler: rewrap(handler, *_fault_wrappers(method)))


def _fault_wrappers(method: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except (ShiftbossError, aio.AbortError):
                raise
            except Exception as exc:
                raise fault(exc, method) from None

        return guarded

    def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            try:
                async for reply in behavior(request, context):
                    yield reply
            except (ShiftbossError, aio.AbortError):
                raise
            except Exception as exc:
                raise fault(exc, method) from None

        return guarded

    return unary, stream
