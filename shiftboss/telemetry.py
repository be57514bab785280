"""OpenTelemetry for shiftboss: traces and metrics, exported over OTLP or to the console.

`configure(settings, service_name)` is the one setup: `shiftboss server start`, `shiftboss
worker start` and the CLI call it. It installs the SDK's providers only when something
will receive what they make: an OTLP endpoint in the standard `OTEL_EXPORTER_OTLP_*`
variables, or `SHIFTBOSS_TELEMETRY_CONSOLE=1`. Otherwise it installs nothing, and no
interceptor is added to any channel or server, so telemetry that is off costs nothing.

The SDK used as a library follows the application: when it has set a global
TracerProvider (or MeterProvider), channels opened from then on are traced with it.

OpenTelemetry itself is imported only when telemetry is on (or the application already
imported it), so a CLI call with telemetry off does not pay for the import.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from shiftboss.settings import Settings

__all__ = [
    "Telemetry",
    "configure",
    "build",
    "sampler",
    "active",
    "use",
    "current_traceparent",
    "context_from_traceparent",
    "span_context_from_traceparent",
    "traced_aio_channel",
    "client_interceptors",
    "is_traced",
    "UNTRACED_METHODS",
]

#: Variables that name where OTLP data goes; any of them turns export on.
OTLP_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)

#: Housekeeping RPCs that would bury the traces people look for: probes, reflection, and
#: the scheduler's batched beat flushes (worker heartbeats themselves travel on the stream).
UNTRACED_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/shiftboss.v1.HeartbeatService/Beat",
        "/shiftboss.v1.PoolService/MarkPolled",
    }
)


def _version() -> str:
    try:
        return metadata.version("shiftboss")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


@dataclass(slots=True)
class Telemetry:
    """The providers shiftboss makes its spans and metrics with."""

    tracer_provider: Any
    #: None when nobody reads metrics.
    meter_provider: Any = None
    #: Made by `configure`, so ours to flush and shut down.
    owned: bool = False
    #: The tracer's sampler is parent-based (the SDK's default), so a span whose parent
    #: was not sampled is not sampled either: the server then goes on with the caller's
    #: context rather than ask the SDK for a span it would not record.
    follows_parent: bool = False

    def tracer(self, name: str) -> Any:
        return self.tracer_provider.get_tracer(name, _version())

    def meter(self, name: str) -> Any:
        if self.meter_provider is None:
            from opentelemetry.metrics import NoOpMeterProvider

            return NoOpMeterProvider().get_meter(name)
        return self.meter_provider.get_meter(name, _version())

    def shutdown(self) -> None:
        """Flush what is buffered and stop the exporters (only providers we made)."""
        if not self.owned:
            return
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                with contextlib.suppress(Exception):  # an unreachable collector must not fail a clean exit
                    provider.shutdown()


_installed: Telemetry | None = None


def configure(settings: Settings, service_name: str, environ: dict[str, str] | None = None) -> Telemetry | None:
    """Install tracing and metrics for this process when an exporter is configured (see
    `build`), globally too, so the application's own code and other instrumentations join
    the trace."""
    global _installed
    built = build(settings, service_name, environ)
    if built is not None:
        from opentelemetry import metrics, trace

        trace.set_tracer_provider(built.tracer_provider)
        metrics.set_meter_provider(built.meter_provider)
        _installed = built
    return built


def build(settings: Settings, service_name: str, environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """The providers `configure` installs, made but not installed.

    None when OTLP is not configured and the console exporter is off, or when
    `OTEL_SDK_DISABLED=true`; ModuleNotFoundError when it is but the OpenTelemetry SDK is
    not installed (shiftboss[telemetry]). `OTEL_SERVICE_NAME` overrides `service_name`; every other `OTEL_*` variable
    means what the OpenTelemetry SDK says."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    otlp = any(env.get(name) for name in OTLP_VARIABLES)
    if not otlp and not settings.telemetry_console:
        return None

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or service_name, "service.version": _version()}
    )
    chosen = sampler(settings, env)
    tracer_provider = TracerProvider(resource=resource, sampler=chosen)
    readers = []
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_endpoint(env, "traces"))))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=_endpoint(env, "metrics"))))
    if settings.telemetry_console:
        # stderr: a CLI's stdout is its answer (`-o json`), which spans must not interleave.
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider, meter_provider, owned=True, follows_parent=parent_based(chosen, env))


def _endpoint(environ: Mapping[str, str], signal: str) -> str | None:
    """The OTLP/HTTP endpoint of one signal, as the exporter reads it from the environment
    (its own variable as it is, else the general one with the signal's path); None: the
    exporter's default."""
    own = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if own:
        return own
    general = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{general.rstrip('/')}/v1/{signal}" if general else None


def sampler(settings: Settings, environ: Mapping[str, str]) -> Any:
    """The sampler `telemetry_sample_ratio` asks for: parent-based, so a call whose caller
    sampled it is sampled and one whose caller did not is not, and a root sampled at that
    ratio. None (the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG) when the
    setting is empty or OTEL_TRACES_SAMPLER is set: the standard variable wins."""
    raw = settings.telemetry_sample_ratio.strip()
    if not raw or environ.get("OTEL_TRACES_SAMPLER"):
        return None
    try:
        ratio = float(raw)
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"setting SHIFTBOSS_TELEMETRY_SAMPLE_RATIO: {raw!r} is not a number from 0 to 1")
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    return ParentBased(TraceIdRatioBased(ratio))


def parent_based(chosen: Any, environ: Mapping[str, str]) -> bool:
    """Whether the tracer's sampler is parent-based: the one `sampler` chose, or the one
    OTEL_TRACES_SAMPLER names (unset: the SDK's default, parentbased_always_on)."""
    if chosen is not None:
        return True  # `sampler` makes parent-based samplers only
    named = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    return not named or named.startswith("parentbased_")


def active() -> Telemetry | None:
    """The telemetry in force: what `configure` (or `use`) installed, else the application's
    global providers when it set real ones, else None."""
    if _installed is not None:
        return _installed
    trace_api = sys.modules.get("opentelemetry.trace")
    if trace_api is None:  # nobody imported OpenTelemetry, so nobody set a provider
        return None
    provider = trace_api.get_tracer_provider()
    if isinstance(provider, (trace_api.ProxyTracerProvider, trace_api.NoOpTracerProvider)):
        return None
    from opentelemetry import metrics

    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, metrics.NoOpMeterProvider):
        meter_provider = None  # (the API's default stands in for a provider set later, and forwards to it)
    return Telemetry(provider, meter_provider)


@contextlib.contextmanager
def use(telemetry: Telemetry | None) -> Iterator[Telemetry | None]:
    """Make `telemetry` the one in force for channels and servers made inside the block
    (tests use it with in-memory exporters; None turns telemetry off)."""
    global _installed
    before = _installed
    _installed = telemetry
    try:
        yield telemetry
    finally:
        _installed = before


# ---------------------------------------------------------------- trace context as text


def current_traceparent() -> str:
    """The W3C traceparent of the current span; empty when there is none."""
    trace_api = sys.modules.get("opentelemetry.trace")
    if trace_api is None:
        return ""
    span_context = trace_api.get_current_span().get_span_context()
    return traceparent_of(span_context)


def traceparent_of(span_context: Any) -> str:
    if not span_context.is_valid:
        return ""
    return _remote_parts()[1](span_context)


@functools.cache
def _trace_api() -> tuple[Any, Any]:
    from opentelemetry import trace
    from opentelemetry.context import Context

    return trace, Context


def span_context_from_traceparent(traceparent: str) -> Any:
    """The remote span `traceparent` names (a SpanContext); None when it is empty or malformed."""
    return _remote_parts()[0](traceparent)


@functools.cache
def _remote_parts() -> tuple[Any, Any]:
    """(how a traceparent is read, how one is written), from shiftboss._traceparent,
    imported once telemetry is used."""
    from shiftboss._traceparent import read_traceparent, traceparent

    return read_traceparent, traceparent


def context_from_traceparent(traceparent: str) -> Any:
    """A context whose current span is the remote one `traceparent` names; an empty context
    (so a new span is a root) when it is empty or malformed."""
    trace, Context = _trace_api()
    span_context = span_context_from_traceparent(traceparent)
    if span_context is None:
        return Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())


# ---------------------------------------------------------------- interceptors


def is_traced(method: Any) -> bool:
    """Whether calls of this method (a full method name) get spans."""
    if isinstance(method, bytes):
        method = method.decode()
    return method not in UNTRACED_METHODS


def traced_aio_channel(channel: Any, telemetry: Telemetry | None, *, local: bool = False) -> Any:
    """`channel`, its calls traced when telemetry is on: a client span each, its context sent
    along. A `local` channel (services of one process calling each other) only sends the
    context: the server span of the same process records that hop already."""
    if telemetry is None:
        return channel
    from shiftboss._rpc_tracing import TracedAioChannel

    return TracedAioChannel(channel, telemetry.tracer("shiftboss.rpc"), is_traced, spans=not local)


def client_interceptors(telemetry: Telemetry | None) -> list[Any]:
    """Interceptors for a blocking channel (see shiftboss._rpc_tracing for why they are ours)."""
    if telemetry is None:
        return []
    from shiftboss._rpc_tracing import BlockingTracing

    return [BlockingTracing(telemetry.tracer("shiftboss.rpc"), is_traced)]
