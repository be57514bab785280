"""W3C traceparent text to and from an OpenTelemetry SpanContext.

Read here rather than by the propagator where only a traceparent can be present (a run's
stored context, `Dispatch.traceparent`): the format is fixed, and the result is the same
SpanContext the propagator builds, through the public constructor.
"""

from __future__ import annotations

import re

from opentelemetry.trace import SpanContext, TraceFlags

__all__ = ["read_traceparent", "traceparent"]

#: A W3C traceparent of version 00, as the propagator reads it.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: Each of the 256 TraceFlags, made once.
_FLAGS = tuple(TraceFlags(flags) for flags in range(256))


def read_traceparent(text: str) -> SpanContext | None:
    """The remote span a W3C traceparent names; None when it is malformed or names no span
    (an id of zeros)."""
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=_FLAGS[int(flags, 16)])
    return context if context.is_valid else None


def traceparent(context: SpanContext) -> str:
    """The W3C traceparent of a valid span context."""
    return "00-%032x-%016x-%02x" % (context.trace_id, context.span_id, context.trace_flags)
