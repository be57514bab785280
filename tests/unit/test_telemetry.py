"""Telemetry's pure parts: when it turns on, trace context as text, JSON log lines, and
that nothing is installed on channels or servers while it is off."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from grpc import aio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span

from shiftboss import telemetry
from shiftboss._json_logs import JsonFormatter, configure_logging
from shiftboss._rpc_tracing import TracedAioChannel
from shiftboss.channels import open_aio_channel, open_channel
from shiftboss.services.tracing import TracingInterceptor, server_interceptors
from shiftboss.settings import load_settings

ON = telemetry.Telemetry(TracerProvider())


def test_configure_installs_nothing_without_an_exporter() -> None:
    settings = load_settings(environ={})
    assert telemetry.configure(settings, "shiftboss-server", environ={}) is None
    assert telemetry.configure(settings, "shiftboss-server", environ={"OTEL_SERVICE_NAME": "x"}) is None


def test_configure_honours_otel_sdk_disabled() -> None:
    settings = load_settings(environ={"SHIFTBOSS_TELEMETRY_CONSOLE": "1"})
    environ = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert telemetry.configure(settings, "shiftboss-server", environ=environ) is None


def test_with_telemetry_off_no_interceptor_or_wrapper_is_installed() -> None:
    settings = load_settings(environ={})
    with telemetry.use(None):
        assert telemetry.active() is None
        assert server_interceptors(telemetry.active()) == []
        assert telemetry.client_interceptors(telemetry.active()) == []
        channel = open_channel("127.0.0.1:1", settings)
        assert type(channel).__module__ == "grpc._channel"  # not an intercepted channel
        channel.close()


async def test_asyncio_channels_are_plain_when_off_and_traced_when_on() -> None:
    settings = load_settings(environ={})
    with telemetry.use(None):
        plain = open_aio_channel("127.0.0.1:1", settings)
    with telemetry.use(ON):
        traced = open_aio_channel("127.0.0.1:1", settings)
        servers = server_interceptors(telemetry.active())
    assert isinstance(plain, aio.Channel)
    assert isinstance(traced, TracedAioChannel)
    assert [type(i) for i in servers] == [TracingInterceptor]
    await plain.close()
    await traced.close()


def test_an_application_tracer_provider_is_honoured_by_channels() -> None:
    """Library use: an application that set a global TracerProvider gets traced channels."""
    with telemetry.use(None):
        assert telemetry.active() is None  # the default proxy provider means: off
    from opentelemetry import trace

    provider = TracerProvider()
    original = trace._TRACER_PROVIDER  # restored below: the global can be set once per process
    trace._TRACER_PROVIDER = provider
    try:
        found = telemetry.active()
        assert found is not None and found.tracer_provider is provider
        assert telemetry.client_interceptors(found)
        settings = load_settings(environ={})
        channel = open_channel("127.0.0.1:1", settings)
        assert isinstance(channel, grpc.Channel) and type(channel).__module__ != "grpc._channel"
        channel.close()
    finally:
        trace._TRACER_PROVIDER = original


def test_traceparent_round_trip() -> None:
    tracer = ON.tracer("tests")
    assert telemetry.current_traceparent() == ""
    with tracer.start_as_current_span("outer") as span:
        text = telemetry.current_traceparent()
    context = span.get_span_context()
    assert text == f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    remote = get_current_span(telemetry.context_from_traceparent(text)).get_span_context()
    assert (remote.trace_id, remote.span_id, remote.is_remote) == (context.trace_id, context.span_id, True)
    child = tracer.start_span("child", context=telemetry.context_from_traceparent(text))
    assert child.parent.span_id == context.span_id
    child.end()
    unsampled = telemetry.span_context_from_traceparent(text[:-2] + "00")
    assert not unsampled.trace_flags.sampled and unsampled.trace_id == context.trace_id


@pytest.mark.parametrize(
    "broken",
    [
        "",
        "garbage",
        "00-xyz-abc-01",
        "00-00000000000000000000000000000000-0000000000000000-01",
        "01-" + "a" * 32 + "-" + "b" * 16 + "-01",
        # what int(..., 16) would take but the W3C format does not
        "00-+" + "a" * 31 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-0x" + "b" * 14 + "-01",
        "00-" + "a" * 16 + "_" + "a" * 15 + "-" + "b" * 16 + "-01",
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01\n",
    ],
)
def test_a_missing_or_broken_traceparent_starts_a_new_trace(broken: str) -> None:
    assert not get_current_span(telemetry.context_from_traceparent(broken)).get_span_context().is_valid
    span = ON.tracer("tests").start_span("root", context=telemetry.context_from_traceparent(broken))
    assert span.parent is None
    span.end()


def _line(record_message: str) -> dict[str, object]:
    record = logging.LogRecord("shiftboss.scheduler", logging.WARNING, __file__, 1, record_message, (), None)
    return json.loads(JsonFormatter().format(record))


def test_json_log_lines_carry_the_current_span() -> None:
    with ON.tracer("tests").start_as_current_span("work") as span:
        inside = _line("inside")
    outside = _line("outside")
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert (inside["level"], inside["logger"], inside["message"]) == ("WARNING", "shiftboss.scheduler", "inside")
    assert "time" in inside
    assert "trace_id" not in outside and "span_id" not in outside


def test_an_unknown_log_format_is_refused_before_logging_changes() -> None:
    root = logging.getLogger()
    handlers = root.handlers[:]
    with pytest.raises(ValueError, match="'xml' is not one of text, json"):
        configure_logging("xml")
    assert root.handlers == handlers


def test_the_sample_ratio_setting_makes_a_parent_based_ratio_sampler() -> None:
    settings = load_settings(environ={"SHIFTBOSS_TELEMETRY_SAMPLE_RATIO": "0.25"})
    chosen = telemetry.sampler(settings, {})
    assert chosen.get_description() == (
        "ParentBased{root:TraceIdRatioBased{0.25},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
        "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
    )
    # The standard variable wins; an empty setting leaves the choice to it (the SDK's default).
    assert telemetry.sampler(settings, {"OTEL_TRACES_SAMPLER": "always_on"}) is None
    assert telemetry.sampler(load_settings(environ={}), {}) is None


@pytest.mark.parametrize("ratio", ["1.5", "-0.1", "half", "nan"])
def test_a_sample_ratio_outside_zero_to_one_is_refused_by_name(ratio: str) -> None:
    settings = load_settings(environ={"SHIFTBOSS_TELEMETRY_SAMPLE_RATIO": ratio})
    with pytest.raises(ValueError, match="SHIFTBOSS_TELEMETRY_SAMPLE_RATIO"):
        telemetry.sampler(settings, {})


@pytest.mark.parametrize(
    ("environ", "follows"),
    [
        ({}, True),  # the SDK's default: parentbased_always_on
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, True),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, False),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, False),
    ],
)
def test_the_server_follows_the_callers_decision_only_under_a_parent_based_sampler(environ: dict[str, str], follows: bool) -> None:
    assert telemetry.parent_based(telemetry.sampler(load_settings(environ={}), environ), environ) is follows
    ratio = load_settings(environ={"SHIFTBOSS_TELEMETRY_SAMPLE_RATIO": "0.5"})
    assert telemetry.parent_based(telemetry.sampler(ratio, {}), {}) is True
