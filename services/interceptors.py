"""Server interceptors: the one place where domain errors become gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from shiftboss.errors import ShiftbossError

log = logging.getLogger("shiftboss.server")


async def _abort(context: aio.ServicerContext, exc: ShiftbossError) -> None:
    await context.abort(grpc.StatusCode[exc.code], exc.message)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except ShiftbossError as exc:
            await _abort(context, exc)

    return handler


def _wrap_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        try:
            async for reply in behavior(request, context):
                yield reply
        except ShiftbossError as exc:
            await _abort(context, exc)

    return handler


def rewrap(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Callable[..., Any]], Callable[..., Any]],
    stream: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> grpc.RpcMethodHandler:
    """The same handler with its behavior wrapped: `unary` for calls answered once, `stream`
    for calls answered by a stream."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, stream),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, unary),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream),
    )
    for attribute, make, wrap in kinds:
        behavior = getattr(handler, attribute)
        if behavior:
            return make(wrap(behavior), handler.request_deserializer, handler.response_serializer)
    return handler


class ErrorInterceptor(aio.ServerInterceptor):
    """Turn a raised ShiftbossError into its status code and message; never UNKNOWN."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return rewrap(handler, _wrap_unary, _wrap_stream)
