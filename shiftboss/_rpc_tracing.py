"""Client spans, where opentelemetry-instrumentation-grpc does not fit how shiftboss calls.

Its asyncio client interceptors go through grpc.aio's interceptor machinery, which costs
a task and several awaits per call (see TracedAioChannel), and its stream interceptors hand
back an async generator in place of the call, whose span ends only if someone reads it
to the end: a stream that is cancelled (a watch the CLI stops following, a worker stream
that drops) keeps its span open. Its blocking interceptor wraps the channel in a legacy
wrapper whose streams are bare generators, without the `cancel()` the SDK calls.

So client spans are made here; they look like the instrumentation's: named by the full
method, kind CLIENT, with rpc.system, rpc.service, rpc.method and rpc.grpc.status_code,
and W3C trace context in the call's metadata. Every call hands back gRPC's own call (or,
for an asyncio unary call, a thin awaitable around it) and its span ends when it is done,
however it ends. Server spans are made by shiftboss.services.tracing, for the same reasons.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from grpc import aio
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["TracedAioChannel", "BlockingTracing"]


def _start(tracer: Any, method: str | bytes) -> Any:
    if isinstance(method, bytes):
        method = method.decode()
    service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    return tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes)


def _end(span: Any, code: grpc.StatusCode, details: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))
    span.end()


def _headers(span: Any, metadata: Any) -> list[tuple[str, str]]:
    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(span))
    return [*(metadata or ()), *carrier.items()]


# ---------------------------------------------------------------- asyncio


class TracedAioChannel:
    """An asyncio channel whose calls get client spans, without gRPC's interceptor machinery.

    grpc.aio runs client interceptors in a task of their own per call and awaits the call's
    status through extra layers; measured on an in-process mesh that doubled what a small
    unary call costs. This wrapper starts the span, adds the trace context to the call's
    metadata and hands the real call back, ending the span when the call is done."""

    def __init__(self, channel: aio.Channel, tracer: Any, traced: Callable[[Any], bool], *, spans: bool = True) -> None:
        self._channel = channel
        self._tracer = tracer
        self._traced = traced
        #: False: calls carry the caller's context but make no span of their own.
        self._spans = spans
        #: Multicallables are stateless, and stubs are made per call in places: make each once.
        self._made: dict[Any, Any] = {}

    def _wrap(self, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = (kind, method)  # a method's serializers are always the same (generated stubs)
        made = self._made.get(key)
        if made is None:
            made = getattr(self._channel, kind)(method, *args, **kwargs)
            if not self._spans:
                made = _Propagating(made)
            elif self._traced(method):
                made = (_TracedUnary if kind.endswith("_unary") else _TracedStream)(made, method, self._tracer)
            self._made[key] = made
        return made

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap("unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap("unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap("stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap("stream_stream", method, args, kwargs)

    def __getattr__(self, name: str) -> Any:  # close, get_state, channel_ready, ...
        return getattr(self._channel, name)

    async def __aenter__(self) -> TracedAioChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()


class _Propagating:
    """Calls that carry the current trace context, with no span of their own."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, request: Any = None, *, metadata: Any = None, **kwargs: Any) -> Any:
        carrier: dict[str, str] = {}
        inject(carrier)
        return self._inner(request, metadata=(*(metadata or ()), *carrier.items()), **kwargs)


class _TracedMultiCallable:
    def __init__(self, inner: Any, method: str, tracer: Any) -> None:
        self._inner = inner
        self._method = method
        self._tracer = tracer

    def _invoke(self, request: Any, metadata: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        span = _start(self._tracer, self._method)
        return span, self._inner(request, metadata=tuple(_headers(span, metadata)), **kwargs)


class _TracedUnary(_TracedMultiCallable):
    def __call__(self, request: Any, *, metadata: Any = None, **kwargs: Any) -> Any:
        span, call = self._invoke(request, metadata, kwargs)
        return _UnaryCall(call, span)


class _UnaryCall:
    """The call, whose awaiting also ends its span (every shiftboss unary call is awaited)."""

    def __init__(self, call: Any, span: Any) -> None:
        self._call = call
        self._span = span

    def __await__(self) -> Any:
        try:
            response = yield from self._call.__await__()
        except aio.AioRpcError as exc:
            _end(self._span, exc.code(), exc.details())
            raise
        except asyncio.CancelledError:
            _end(self._span, grpc.StatusCode.CANCELLED, "cancelled")
            raise
        _end(self._span, grpc.StatusCode.OK, None)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _TracedStream(_TracedMultiCallable):
    def __call__(self, request: Any = None, *, metadata: Any = None, **kwargs: Any) -> Any:
        span, call = self._invoke(request, metadata, kwargs)

        async def finish() -> None:
            try:
                code, details = await call.code(), await call.details()
            except asyncio.CancelledError:
                code, details = grpc.StatusCode.CANCELLED, "cancelled"
            _end(span, code, details)

        call.add_done_callback(lambda _: asyncio.ensure_future(finish()))
        return call


# ---------------------------------------------------------------- blocking


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):
    pass


class BlockingTracing(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, tracer: Any, traced: Callable[[Any], bool]) -> None:
        self.tracer = tracer
        self.traced = traced

    def _begin(self, details: grpc.ClientCallDetails) -> tuple[Any, _CallDetails]:
        span = _start(self.tracer, details.method)
        new = _CallDetails(
            details.method,
            details.timeout,
            _headers(span, details.metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        return span, new

    def _call(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """A call with one request, its span ended when the call is done."""
        if not self.traced(client_call_details.method):
            return continuation(client_call_details, request)
        span, details = self._begin(client_call_details)
        try:
            call = continuation(details, request)
        except BaseException:
            _end(span, grpc.StatusCode.UNKNOWN, "the call could not start")
            raise
        call.add_done_callback(lambda done: _end(span, done.code(), done.details()))
        return call

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)
