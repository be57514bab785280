"""Spans on the server's hot path, made without the general machinery of the SDK's
`Tracer.start_span` where it would decide nothing.

Every run costs the server three spans: its CreateFlowRun, its admission and its dispatch.
For each, `Tracer.start_span` asks the sampler, whose default (ParentBased(ALWAYS_ON))
records and samples every span whose parent is sampled or absent; cleans every attribute
value (type checks and a copy); reads the parent back out of a Context built for the
purpose; and builds a span of some twenty fields, locks, a bounded attribute map and two
bounded lists, most of which a span that only gets an end never uses. Ending it copies
it again for the span processors. On the telemetry bench (bench/test_telemetry_bench.py)
that was most of what tracing cost the server per run.

`Spans` makes the spans the tracer would make, with the same trace and parent, flags,
trace state, resource, instrumentation scope and span processors, and takes the short way
only where the outcome is the same:

- the tracer is the SDK's and enabled, and its sampler is ALWAYS_ON or ParentBased(ALWAYS_ON)
  (the default), so a span is recorded and sampled whenever its parent is;
- the parent, if any, is sampled;
- the attributes fit the span limits as they are: their values are str, bool, int or float
  (the callers' promise), no more of them than the limit allows, and no value-length limit
  is set.

Where, besides, no span processor does anything when a span starts or is ending (the SDK's
batch and simple processors do nothing then), a span reaches the processors only when it
has ended, as the read-only span that ending an SDK span hands them: `finished` and `emit`
hand over spans whose start and end are known, and `start` gives a live span that makes
its SDK span only if it is asked for more than its context and its end (an attribute, a
status, an event). Otherwise `start` makes the SDK span at once, with its fields set
directly, and processors see it start. Anything else goes through `tracer.start_span`.
When the tracer's only processor is a BatchSpanProcessor, an ended span goes straight to
its queue, as its `on_end` puts a sampled span there. A SpanContext is a tuple (trace id,
span id, is remote, flags, trace state, is valid): contexts are built as that tuple
(`span_context`) and read by position.

tests/unit/test_spans.py holds each way against the tracer's.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, sampling
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics, noop
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import _SPAN_ID_MAX_VALUE, _TRACE_ID_MAX_VALUE, DEFAULT_TRACE_STATE

__all__ = ["Spans", "read_traceparent", "span_context", "traceparent"]

log = logging.getLogger(__name__)

_UNSET = Status(StatusCode.UNSET)
_EMPTY = Context()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_RECORD_AND_SAMPLE = sampling.Decision.RECORD_AND_SAMPLE
#: Span processors whose on_start and _on_ending do nothing.
_QUIET = (BatchSpanProcessor, SimpleSpanProcessor)

Attributes = Mapping[str, "str | bool | int | float"]


def _records_every_sampled_child(sampler: Any) -> bool:
    """Whether `sampler` records and samples every root span and every span whose parent is
    sampled, whatever its name, kind or attributes."""
    always = sampling.ALWAYS_ON
    if sampler is always:
        return True
    return (
        type(sampler) is sampling.ParentBased
        and sampler._root is always
        and sampler._remote_parent_sampled is always
        and sampler._local_parent_sampled is always
    )


_new = tuple.__new__


def span_context(trace_id: int, span_id: int, is_remote: bool, flags: TraceFlags) -> SpanContext:
    """SpanContext(trace_id, span_id, is_remote, flags): the tuple its `__new__` builds (the
    four, the default trace state, and whether the ids are valid), built directly: a
    context is made for every span and every trace context read, and the general
    constructor's defaults cost several times more."""
    valid = 0 < trace_id <= _TRACE_ID_MAX_VALUE and 0 < span_id <= _SPAN_ID_MAX_VALUE
    return _new(SpanContext, (trace_id, span_id, is_remote, flags, DEFAULT_TRACE_STATE, valid))


#: A W3C traceparent of version 00, as the propagator reads it.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: Each of the 256 TraceFlags, made once.
_FLAGS = tuple(TraceFlags(flags) for flags in range(256))


def read_traceparent(text: str) -> SpanContext | None:
    """The remote span a W3C traceparent names; None when it is malformed or names no span
    (an id of zeros). Read here rather than by the propagator: this runs for every call
    and every dispatched run."""
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    trace_id, span_id = int(trace_id, 16), int(span_id, 16)
    if not trace_id or not span_id:  # 32 and 16 hex digits are within the greatest ids
        return None
    return _new(SpanContext, (trace_id, span_id, True, _FLAGS[int(flags, 16)], DEFAULT_TRACE_STATE, True))


def traceparent(span_context: SpanContext) -> str:
    """The W3C traceparent of a valid span context, read from the tuple it is."""
    return "00-%032x-%016x-%02x" % (span_context[0], span_context[1], span_context[3])


class Spans:
    """Makes spans of one tracer, the short way where it makes no difference."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self._short = (
            isinstance(tracer, sdk_trace.Tracer)
            and _records_every_sampled_child(tracer.sampler)
            and tracer._span_limits.max_span_attribute_length is None
        )
        if self._short:
            self._root_flags = _SAMPLED_RANDOM if tracer.id_generator.is_trace_id_random() else _SAMPLED
            self._max_attributes = tracer._span_limits.max_span_attributes
        #: Whether the SDK counts the spans it makes (its own metrics; off unless asked for).
        self._counts_spans = type(getattr(tracer, "_tracer_metrics", None)) is not NoOpTracerMetrics
        #: The span processors last looked at, and whether each does nothing when spans start
        #: or are ending (processors can be added at any time; the tuple is replaced then).
        self._processors: Any = None
        self._quiet = False
        #: The queue of the tracer's one batch processor, when it has no other (sampled
        #: spans only).
        self._enqueue: Any = None

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        attributes: Attributes,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> trace.Span:
        """A started span, child of `parent` (a root when None or invalid), started now or at
        `start_time` (ns since the epoch). `attributes` hold only str, bool, int and float
        values, and must not change until the span has ended: a live span copies them when
        it ends, or when it is first asked for more."""
        if parent is not None and not parent.is_valid:
            parent = None
        context = self._context(parent, len(attributes))
        tracer = self.tracer
        if context is None:
            carried = _EMPTY if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent), _EMPTY)
            return tracer.start_span(name, context=carried, kind=kind, attributes=attributes, start_time=start_time)
        record_end_metrics = tracer._tracer_metrics.start_span(parent, _RECORD_AND_SAMPLE) if self._counts_spans else noop
        if self._quiet_processors():
            started = time_ns() if start_time is None else start_time
            return _Live(self, name, context, parent, kind, attributes, started, record_end_metrics)
        return self._sdk_span(name, context, parent, kind, attributes, start_time, record_end_metrics)

    def finished(
        self,
        name: str,
        parent: SpanContext | None,
        attributes: Attributes,
        start_time: int,
        end_time: int,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> SpanContext:
        """A span from `start_time` to `end_time` (ns since the epoch), started and ended at
        once; its context."""
        if parent is not None and not parent.is_valid:
            parent = None
        context = self.child(parent, len(attributes))
        if context is not None:
            self.emit(name, context, parent, dict(attributes), start_time, end_time, kind)
            return context
        span = self.start(name, parent, attributes, kind, start_time)
        span.end(end_time)
        return span.get_span_context()

    def child(self, parent: SpanContext | None, attributes: int) -> SpanContext | None:
        """The context of a span, child of `parent` (valid or None), with `attributes`
        attributes, that is to be handed over finished by `emit`, now or later; None when
        it must be made by `finished` instead, the long way."""
        return self._context(parent, attributes) if self._quiet_processors() else None

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, str | bool | int | float],
        start_time: int,
        end_time: int,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        """Hand the span `context` (from `child(parent, ...)`), from `start_time` to
        `end_time`, to the span processors. The span keeps `attributes` as they are."""
        if self._counts_spans:
            self.tracer._tracer_metrics.start_span(parent, _RECORD_AND_SAMPLE)()  # started, and ended
        self._hand_over(name, context, parent, attributes, start_time, end_time, kind, _UNSET)

    # ---------------------------------------------------------------- the ways

    def _context(self, parent: SpanContext | None, attributes: int) -> SpanContext | None:
        """The context of a new span with `attributes` attributes, child of `parent` (valid
        or None), where the short way makes the span the tracer would; None where the
        tracer must make it."""
        tracer = self.tracer
        if (
            not self._short
            or (self._max_attributes is not None and attributes > self._max_attributes)
            or not tracer._is_enabled()
        ):
            return None
        if parent is None:
            trace_id = tracer.id_generator.generate_trace_id()
            flags, state = self._root_flags, DEFAULT_TRACE_STATE
        else:
            # The parent's fields read from the tuple it is (trace id, span id, is remote,
            # flags, state, is valid); its flags are an int, their bits read directly.
            trace_id, _, _, carried, state, _ = parent
            if not carried & TraceFlags.SAMPLED:
                return None
            flags = _SAMPLED_RANDOM if carried & TraceFlags.RANDOM_TRACE_ID else _SAMPLED
        span_id = tracer.id_generator.generate_span_id()
        valid = 0 < trace_id <= _TRACE_ID_MAX_VALUE and 0 < span_id <= _SPAN_ID_MAX_VALUE
        return _new(SpanContext, (trace_id, span_id, False, flags, state, valid))

    def _quiet_processors(self) -> bool:
        """Whether the tracer's span processors all do nothing when spans start or are ending."""
        if not self._short:
            return False
        processor = self.tracer.span_processor
        if type(processor) is not sdk_trace.SynchronousMultiSpanProcessor:
            return False
        processors = processor._span_processors
        if processors is not self._processors:
            self._processors = processors
            self._quiet = all(type(p) in _QUIET for p in processors)
            # One batch processor alone: a sampled span it is handed goes straight to its
            # queue (what its on_end does after checking the span is sampled).
            alone = processors[0] if len(processors) == 1 else None
            self._enqueue = alone._batch_processor.emit if type(alone) is BatchSpanProcessor else None
        return self._quiet

    def _sdk_span(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        start_time: int | None,
        record_end_metrics: Any,
    ) -> sdk_trace.Span:
        """The SDK span, started (processors see it start)."""
        kept = BoundedAttributes(self._max_attributes, None, immutable=False)
        kept._dict.update(attributes)  # values the SDK would keep as they are (see the docstring)
        span = _Span(self.tracer, name, context, parent, kind, kept, record_end_metrics)
        span.start(start_time=start_time)
        return span

    def _hand_over(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        start_time: int,
        end_time: int,
        kind: SpanKind,
        status: Status,
    ) -> None:
        tracer = self.tracer
        processor = tracer.span_processor
        # Spans handed over are sampled (see _context): with one batch processor alone, each
        # goes straight to its queue, unless processors were added or removed since it began.
        enqueue = self._enqueue if processor._span_processors is self._processors else None
        (enqueue or processor.on_end)(
            ReadableSpan(  # (in the order of its parameters: passed by keyword they cost more)
                name,
                context,
                parent,
                tracer.resource,
                attributes,
                (),  # events
                (),  # links
                kind,
                tracer.instrumentation_info,
                status,
                start_time,
                end_time,
                tracer._instrumentation_scope,
            )
        )


class _Span(sdk_trace._Span):
    """An SDK span whose fields are set here, as `Span.__init__` sets them, rather than
    worked out by it: see the module docstring for when they come out the same."""

    def __init__(
        self,
        tracer: sdk_trace.Tracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: BoundedAttributes,
        record_end_metrics: Any,
    ) -> None:
        limits = tracer._span_limits
        # ReadableSpan's
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = parent
        self._start_time = None
        self._end_time = None
        self._attributes = attributes
        self._events = BoundedList(limits.max_events)
        self._links = BoundedList(limits.max_links)
        self._resource = tracer.resource
        self._status = _UNSET
        # Span's
        self._sampler = tracer.sampler
        self._trace_config = None
        self._record_exception = True
        self._set_status_on_exception = True
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._record_end_metrics = record_end_metrics


class _Live(trace.Span):
    """A started span that the span processors see only once it has ended (they do nothing
    before). It is its context and its end until asked for anything more; then it makes
    the SDK span it stands for, started when it started, and hands everything to that."""

    __slots__ = ("_spans", "_name", "_context", "_parent", "_kind", "_attributes", "_start_time", "_record_end", "_span", "_ended")

    def __init__(
        self,
        spans: Spans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        start_time: int,
        record_end_metrics: Any,
    ) -> None:
        self._spans = spans
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._start_time = start_time
        self._record_end = record_end_metrics
        self._span: sdk_trace.Span | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._span.is_recording() if self._span is not None else not self._ended

    def end(self, end_time: int | None = None) -> None:
        if self._span is not None:
            self._span.end(end_time)
            return
        if self._ended:
            log.warning("Calling end() on an ended span.")
            return
        self._ended = True
        self._record_end()
        self._spans._hand_over(
            self._name,
            self._context,
            self._parent,
            dict(self._attributes),
            self._start_time,
            time_ns() if end_time is None else end_time,
            self._kind,
            _UNSET,
        )

    def _sdk(self, asked: str) -> sdk_trace.Span | None:
        """The SDK span, made on first need; None (with the SDK's warning) once ended without one."""
        if self._span is None:
            if self._ended:
                log.warning("Tried calling %s on an ended span.", asked)
                return None
            self._span = self._spans._sdk_span(
                self._name, self._context, self._parent, self._kind, self._attributes, self._start_time, self._record_end
            )
        return self._span

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if (span := self._sdk("set_attributes")) is not None:
            span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if (span := self._sdk("set_attribute")) is not None:
            span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if (span := self._sdk("add_event")) is not None:
            span.add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if (span := self._sdk("add_link")) is not None:
            span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        if (span := self._sdk("update_name")) is not None:
            span.update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        if (span := self._sdk("set_status")) is not None:
            span.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False) -> None:
        if (span := self._sdk("record_exception")) is not None:
            span.record_exception(exception, attributes, timestamp, escaped)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None and (span := self._sdk("__exit__")) is not None:
            span.__exit__(exc_type, exc_val, exc_tb)  # records the exception, as an SDK span does
            return
        self.end()
