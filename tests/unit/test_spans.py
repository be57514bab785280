"""shiftboss._spans makes the spans the SDK's tracer would, and leaves to the tracer what it
cannot make the same: each way side by side with the tracer's."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from shiftboss._spans import Spans, span_context, traceparent

ATTRIBUTES = {"shiftboss.pool": "etl", "shiftboss.lease": 3, "shiftboss.waited": 0.25, "shiftboss.once": True}
REMOTE = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
#: The ways a span is made: live and ended later, or made finished; with the span
#: processors only exporting ("quiet"), or with one that acts when spans start.
WAYS = [("start", False), ("start", True), ("finished", False), ("finished", True)]


class Starts(SpanProcessor):
    """Records what on_start was given."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)


def provider(watching: bool = False, batched: bool = False, **kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter, Starts]:
    exporter = InMemorySpanExporter()
    starts = Starts()
    made = TracerProvider(resource=Resource.create({"service.name": "tests"}), **kwargs)
    if watching:
        made.add_span_processor(starts)
    made.add_span_processor((BatchSpanProcessor if batched else SimpleSpanProcessor)(exporter))
    return made, exporter, starts


def parented(parent: SpanContext | None) -> Context:
    return Context() if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent), Context())


def both(
    parent: SpanContext | None, way: str = "start", watching: bool = False, attributes: Any = ATTRIBUTES, **kwargs: Any
) -> tuple[ReadableSpan | None, ReadableSpan | None, SpanContext]:
    """The span Spans makes and the span the tracer makes, ended and exported: (Spans',
    the tracer's, the context of Spans')."""
    made, exporter, starts = provider(watching, **kwargs)
    tracer = made.get_tracer("tests", "1.0")
    spans = Spans(tracer)
    if way == "start":
        span = spans.start("work", parent, attributes, kind=SpanKind.SERVER, start_time=1_000)
        if watching and isinstance(span, SdkSpan):
            assert starts.started == [span]  # the processor saw it start
        span.end(2_000)
        made_here = span.get_span_context()
    else:
        made_here = spans.finished("work", parent, attributes, 1_000, 2_000, kind=SpanKind.SERVER)
        if watching and made_here.trace_flags.sampled:
            assert len(starts.started) == 1
    tracer.start_span("work", context=parented(parent), kind=SpanKind.SERVER, attributes=attributes, start_time=1_000).end(2_000)
    finished = exporter.get_finished_spans()
    if not finished:
        return None, None, made_here
    assert len(finished) == 2
    return finished[0], finished[1], made_here


def same(short: ReadableSpan, sdk: ReadableSpan, same_trace: bool) -> None:
    assert short.name == sdk.name and short.kind == sdk.kind
    assert (short.start_time, short.end_time) == (sdk.start_time, sdk.end_time)
    assert short.parent == sdk.parent
    assert short.context.is_remote is sdk.context.is_remote is False
    assert short.context.trace_flags == sdk.context.trace_flags
    assert short.context.trace_state == sdk.context.trace_state
    assert (short.context.trace_id == sdk.context.trace_id) is same_trace
    assert short.context.span_id != sdk.context.span_id
    assert dict(short.attributes) == dict(sdk.attributes)
    assert (short.dropped_attributes, short.dropped_events, short.dropped_links) == (
        sdk.dropped_attributes,
        sdk.dropped_events,
        sdk.dropped_links,
    )
    assert short.status.status_code == sdk.status.status_code and short.status.description == sdk.status.description
    assert short.resource is sdk.resource
    assert short.instrumentation_scope == sdk.instrumentation_scope
    assert short.events == sdk.events and short.links == sdk.links
    assert short.to_json().count("\n") == sdk.to_json().count("\n")


@pytest.mark.parametrize(("way", "watching"), WAYS)
def test_a_child_of_a_remote_parent_is_the_span_the_tracer_makes(way: str, watching: bool) -> None:
    short, sdk, context = both(REMOTE, way, watching)
    same(short, sdk, same_trace=True)
    assert short.parent.span_id == REMOTE.span_id
    assert short.context == context


@pytest.mark.parametrize(("way", "watching"), WAYS)
def test_a_root_is_the_span_the_tracer_makes(way: str, watching: bool) -> None:
    short, sdk, _ = both(None, way, watching)
    same(short, sdk, same_trace=False)
    assert short.parent is None


@pytest.mark.parametrize("sampler", [ALWAYS_ON, DEFAULT_ON, ParentBased(ALWAYS_ON)])
def test_samplers_that_record_everything_take_the_short_way(sampler: Any) -> None:
    made, _, _ = provider(sampler=sampler)
    spans = Spans(made.get_tracer("tests"))
    assert type(spans.start("work", REMOTE, {})).__module__ == "shiftboss._spans"
    assert spans.child(REMOTE, 2) is not None


def test_trace_state_and_random_flag_carry_over_from_the_parent() -> None:
    parent = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID),
        trace_state=TraceState([("vendor", "value")]),
    )
    for way, watching in WAYS:
        short, sdk, _ = both(parent, way, watching)
        same(short, sdk, same_trace=True)
        assert short.context.trace_state.get("vendor") == "value"


@pytest.mark.parametrize("watching", [False, True])
def test_a_local_parent_is_a_span_of_the_same_tracer(watching: bool) -> None:
    made, exporter, _ = provider(watching)
    spans = Spans(made.get_tracer("tests"))
    outer = spans.start("outer", None, {})
    inner = spans.start("inner", outer.get_span_context(), {"n": 1})
    finished = spans.finished("finished", outer.get_span_context(), {}, 1, 2)
    inner.end()
    outer.end()
    ended = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("inner", "finished"):
        assert ended[name].parent.span_id == outer.get_span_context().span_id
        assert ended[name].context.trace_id == outer.get_span_context().trace_id
    assert ended["finished"].context == finished


@pytest.mark.parametrize("way", ["start", "finished"])
def test_a_batch_processor_alone_is_handed_the_span_the_tracer_makes(way: str) -> None:
    made, exporter, _ = provider(batched=True)
    tracer = made.get_tracer("tests", "1.0")
    spans = Spans(tracer)
    if way == "start":
        spans.start("work", REMOTE, ATTRIBUTES, kind=SpanKind.SERVER, start_time=1_000).end(2_000)
    else:
        spans.finished("work", REMOTE, ATTRIBUTES, 1_000, 2_000, kind=SpanKind.SERVER)
    assert spans._enqueue is not None  # straight to its queue
    tracer.start_span("work", context=parented(REMOTE), kind=SpanKind.SERVER, attributes=ATTRIBUTES, start_time=1_000).end(2_000)
    made.force_flush()
    short, sdk = exporter.get_finished_spans()
    same(short, sdk, same_trace=True)


def test_a_processor_added_while_spans_are_open_sees_them_end() -> None:
    made, exporter, _ = provider(batched=True)
    spans = Spans(made.get_tracer("tests"))
    context = spans.child(REMOTE, 1)
    assert context is not None
    live = spans.start("live", REMOTE, {})
    late = InMemorySpanExporter()
    made.add_span_processor(SimpleSpanProcessor(late))
    spans.emit("handed", context, REMOTE, {"n": 1}, 5, 9)
    live.end()
    made.force_flush()
    assert sorted(s.name for s in late.get_finished_spans()) == ["handed", "live"]
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["handed", "live"]


def test_a_handed_over_span_is_the_one_whose_context_was_given() -> None:
    made, exporter, _ = provider()
    spans = Spans(made.get_tracer("tests"))
    context = spans.child(REMOTE, 1)
    assert context is not None and context.trace_id == REMOTE.trace_id
    spans.emit("later", context, REMOTE, {"n": 1}, 5, 9)
    (span,) = exporter.get_finished_spans()
    assert (span.context, span.parent, span.name, dict(span.attributes)) == (context, REMOTE, "later", {"n": 1})
    assert (span.start_time, span.end_time, span.kind) == (5, 9, SpanKind.INTERNAL)


@pytest.mark.parametrize("watching", [False, True])
def test_a_span_changes_after_start_as_an_sdk_span_does(watching: bool) -> None:
    made, exporter, _ = provider(watching)
    tracer = made.get_tracer("tests")
    for span in (Spans(tracer).start("work", REMOTE, ATTRIBUTES), tracer.start_span("work", parented(REMOTE), attributes=ATTRIBUTES)):
        assert span.is_recording()
        span.set_attribute("rpc.grpc.status_code", 13)
        span.set_attributes({"extra": [1, 2]})
        span.add_event("happened", {"k": "v"})
        span.record_exception(ValueError("broken"))
        span.set_status(trace.Status(StatusCode.ERROR, "INTERNAL: broken"))
        span.update_name("renamed")
        span.end()
        assert not span.is_recording()
        span.set_attribute("late", 1)  # ignored once ended
        span.end()  # and ending twice too
    short, sdk = exporter.get_finished_spans()
    assert short.name == sdk.name == "renamed"
    assert dict(short.attributes) == dict(sdk.attributes)
    assert short.attributes["extra"] == (1, 2)
    assert [e.name for e in short.events] == [e.name for e in sdk.events] == ["happened", "exception"]
    assert short.events[1].attributes["exception.type"] == sdk.events[1].attributes["exception.type"]
    assert short.status.status_code == StatusCode.ERROR and short.status.description == "INTERNAL: broken"
    assert short.start_time <= short.end_time


def test_a_live_span_ended_untouched_is_handed_over_as_it_began() -> None:
    made, exporter, _ = provider()
    span = Spans(made.get_tracer("tests")).start("work", REMOTE, ATTRIBUTES)
    span.end()
    span.set_attribute("late", 1)  # ignored once ended
    (ended,) = exporter.get_finished_spans()
    assert dict(ended.attributes) == ATTRIBUTES
    assert ended.start_time <= ended.end_time


def test_a_live_span_used_as_a_context_manager_records_what_escaped() -> None:
    made, exporter, _ = provider()
    spans = Spans(made.get_tracer("tests"))
    with pytest.raises(ValueError), spans.start("failing", REMOTE, {}):
        raise ValueError("broken")
    with spans.start("fine", REMOTE, {}):
        pass
    ended = {s.name: s for s in exporter.get_finished_spans()}
    assert ended["failing"].status.status_code == StatusCode.ERROR
    assert [e.name for e in ended["failing"].events] == ["exception"]
    assert ended["fine"].status.status_code == StatusCode.UNSET


def test_it_keeps_the_fields_of_an_sdk_span() -> None:
    """A field the SDK's Span gains in a new version must be set by shiftboss._spans too."""
    made, _, _ = provider(watching=True)
    tracer = made.get_tracer("tests")
    short = Spans(tracer).start("work", REMOTE, ATTRIBUTES)
    sdk = tracer.start_span("work", parented(REMOTE), attributes=ATTRIBUTES)
    assert isinstance(short, SdkSpan)
    assert sorted(vars(short)) == sorted(vars(sdk))
    for name in vars(sdk):
        assert type(getattr(short, name)) is type(getattr(sdk, name)), name
    short.end()
    sdk.end()


def test_a_sampler_that_decides_gets_to_decide() -> None:
    made, _, _ = provider(sampler=TraceIdRatioBased(0.0))
    spans = Spans(made.get_tracer("tests"))
    assert type(spans.start("work", REMOTE, {})).__module__ != "shiftboss._spans"  # the tracer made it
    assert spans.child(REMOTE, 0) is None
    for way in ("start", "finished"):
        short, _, context = both(None, way, sampler=ParentBased(TraceIdRatioBased(0.0)))
        assert short is None and not context.trace_flags.sampled


@pytest.mark.parametrize("way", ["start", "finished"])
def test_an_unsampled_parent_makes_an_unsampled_span(way: str) -> None:
    parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    short, _, context = both(parent, way)
    assert short is None
    assert not context.trace_flags.sampled and context.trace_id == parent.trace_id


@pytest.mark.parametrize(("way", "watching"), WAYS)
def test_attribute_limits_are_applied_as_the_tracer_applies_them(way: str, watching: bool) -> None:
    short, sdk, _ = both(REMOTE, way, watching, span_limits=SpanLimits(max_span_attribute_length=2))
    assert short.attributes["shiftboss.pool"] == sdk.attributes["shiftboss.pool"] == "et"
    short, sdk, _ = both(REMOTE, way, watching, span_limits=SpanLimits(max_span_attributes=2))
    same(short, sdk, same_trace=True)
    assert short.dropped_attributes == 2


def test_an_invalid_parent_makes_a_root() -> None:
    for way, watching in WAYS:
        short, sdk, _ = both(trace.INVALID_SPAN_CONTEXT, way, watching)
        assert short.parent is None and sdk.parent is None


@pytest.mark.parametrize("way", ["start", "finished"])
def test_the_sdk_counts_the_spans_made_the_short_way_when_asked(way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    made, _, _ = provider(meter_provider=MeterProvider(metric_readers=[reader]))
    spans = Spans(made.get_tracer("tests"))
    for _ in range(2):
        if way == "start":
            spans.start("work", REMOTE, {}).end()
        else:
            spans.finished("work", REMOTE, {}, 1, 2)
    spans.start("open", REMOTE, {})
    counted = {
        m.name: sum(p.value for p in m.data.data_points)
        for r in reader.get_metrics_data().resource_metrics
        for sm in r.scope_metrics
        for m in sm.metrics
    }
    assert counted == {"otel.sdk.span.started": 3, "otel.sdk.span.live": 1}


@pytest.mark.parametrize("ids", [(0x1234, 0x5678), (0, 0x5678), (0x1234, 0), (2**128, 1), (1, 2**64), (2**128 - 1, 2**64 - 1)])
@pytest.mark.parametrize("remote", [True, False])
def test_a_span_context_made_directly_is_the_one_its_constructor_makes(ids: tuple[int, int], remote: bool) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
    made, general = span_context(*ids, remote, flags), SpanContext(*ids, is_remote=remote, trace_flags=flags)
    assert type(made) is SpanContext and made == general
    assert (made.is_valid, made.is_remote, made.trace_flags, made.trace_state) == (
        general.is_valid,
        general.is_remote,
        general.trace_flags,
        general.trace_state,
    )
    if made.is_valid:
        assert traceparent(made) == f"00-{ids[0]:032x}-{ids[1]:016x}-03"

