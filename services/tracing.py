"""A server span for every RPC the mesh serves, when telemetry is on.

Written here rather than taken from opentelemetry-instrumentation-grpc's
`aio_server_interceptor`, which gives the same spans but builds more per call (the peer
address parsed and split into three attributes, the metadata copied twice, the servicer
context wrapped in a proxy). The spans are the same shape: named by the full method, kind
SERVER, rpc.system, rpc.service, rpc.method and rpc.grpc.status_code, a parent taken from
the W3C context in the call's metadata (with the process's propagators), and an error
status only for the codes that are the server's fault (UNKNOWN, DEADLINE_EXCEEDED,
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), as the semantic conventions say.

Spans are made through the tracer's public API, so the sampler decides: with a
parent-based ratio sampler, a call that the ratio leaves out gets a non-recording span,
and nothing more is computed for it. A call whose caller did not sample it is not
sampled by a parent-based sampler either, so then no span is asked for: the call goes
on in the caller's context, which carries that decision on to whatever it calls.

With telemetry on it is the error interceptor too (a subclass of it, in its place, first
of the server's interceptors), so every call goes through one wrapper rather than two,
built once per method: the span wraps the call as the others leave it and records the
code the caller gets, the domain error's own when a ShiftbossError becomes the call's
status. The wrapper is shared by the method's calls, so each call's traceparent is read
from its own servicer context.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from shiftboss._traceparent import read_traceparent
from shiftboss.errors import ShiftbossError
from shiftboss.services.interceptors import ErrorInterceptor, abort, checked
from shiftboss.telemetry import Telemetry, is_traced

__all__ = ["TracingInterceptor", "server_interceptors"]

CODE = "rpc.grpc.status_code"
_EMPTY = Context()
#: Codes that make a server span an error; the others are the caller's doing.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def server_interceptors(telemetry: Telemetry | None) -> list[aio.ServerInterceptor]:
    """The interceptors that trace a server, to go first and in place of the error
    interceptor (they map errors too); none when telemetry is off."""
    return [] if telemetry is None else [TracingInterceptor(telemetry.tracer("shiftboss.rpc"), telemetry.follows_parent)]


def _status_of(context: Any, exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, aio.AbortError):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
        if isinstance(code, int):  # some grpc versions hand back the number
            return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
        return grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class TracingInterceptor(ErrorInterceptor):
    def __init__(self, tracer: Any, follows_parent: bool = False) -> None:
        super().__init__()
        self.tracer = tracer
        #: The sampler is parent-based (see the module's docstring).
        self.follows_parent = follows_parent
        propagators = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(" ", "")
        self._w3c_only = propagators in ("tracecontext,baggage", "baggage,tracecontext", "tracecontext")
        #: Attributes of each method, split once.
        self._attributes: dict[str, dict[str, Any]] = {}

    def _start(self, method: str, metadata: Any) -> tuple[Any, object]:
        """The call's span, made current; (span, token to detach)."""
        attributes = self._attributes.get(method)
        if attributes is None:
            service, _, name = method.lstrip("/").partition("/")
            # The status code is OK until a failure says otherwise: no second write on success.
            attributes = self._attributes[method] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, CODE: 0}
        carried = self._parent(metadata) if metadata else _EMPTY
        if self.follows_parent:
            caller = trace.get_current_span(carried)
            upstream = caller.get_span_context()
            if upstream.is_valid and not upstream.trace_flags.sampled:
                return caller, otel_context.attach(carried)  # not sampled upstream: nor here
        span = self.tracer.start_span(method, context=carried, kind=SpanKind.SERVER, attributes=attributes)
        return span, otel_context.attach(trace.set_span_in_context(span, carried))

    def _parent(self, metadata: Any) -> Any:
        """The caller's context. With the default propagators (W3C trace context and
        baggage), a call that carries a traceparent and nothing else is read directly: this
        runs for every call, and the propagators' general path costs several times more."""
        if self._w3c_only:
            traceparent = None
            for key, value in metadata:
                if key == "traceparent":
                    traceparent = value
                elif key in ("tracestate", "baggage"):
                    break
            else:
                if traceparent is None:
                    return _EMPTY
                parent = read_traceparent(traceparent)
                if parent is not None:  # None when it could not be read: the propagator decides then
                    return trace.set_span_in_context(trace.NonRecordingSpan(parent), _EMPTY)
        return extract(dict(metadata))

    @staticmethod
    def _refused(span: Any, exc: ShiftbossError) -> None:
        """The call ends with the domain error's code (see ErrorInterceptor)."""
        if not span.is_recording():
            return
        code = grpc.StatusCode[exc.code]
        span.set_attribute(CODE, code.value[0])
        if code in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {exc.message}"))

    @staticmethod
    def _failed(span: Any, context: Any, exc: BaseException) -> None:
        if not span.is_recording():
            return
        code = _status_of(context, exc)
        span.set_attribute(CODE, code.value[0])
        if code in SERVER_FAULTS:
            if not isinstance(exc, aio.AbortError):
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {context.details() or exc}"))

    def _unary(self, method: str, streaming: bool, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def traced(request: Any, context: Any) -> Any:
            span, token = self._start(method, context.invocation_metadata())
            try:
                return await behavior(checked(request, streaming), context)
            except ShiftbossError as exc:
                self._refused(span, exc)
                await abort(context, exc)
            except BaseException as exc:
                self._failed(span, context, exc)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return traced

    def _stream(self, method: str, streaming: bool, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def traced(request: Any, context: Any) -> AsyncIterator[Any]:
            span, token = self._start(method, context.invocation_metadata())
            try:
                async for reply in behavior(checked(request, streaming), context):
                    yield reply
            except ShiftbossError as exc:
                self._refused(span, exc)
                await abort(context, exc)
            except BaseException as exc:
                self._failed(span, context, exc)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return traced

    def wrappers(
        self, method: str, streaming: bool
    ) -> tuple[Callable[[Callable[..., Any]], Callable[..., Any]], Callable[[Callable[..., Any]], Callable[..., Any]]]:
        if not is_traced(method):
            return super().wrappers(method, streaming)
        return (
            lambda behavior: self._unary(method, streaming, behavior),
            lambda behavior: self._stream(method, streaming, behavior),
        )
