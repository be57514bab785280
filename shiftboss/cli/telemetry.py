"""The CLI's telemetry: its calls are traced (service `shiftboss-cli`) when the OTLP
variables or SHIFTBOSS_TELEMETRY_CONSOLE say so; spans are flushed when the command exits.

Set up on the first client a command opens, not at start: `server start` and `worker
start` set up their own (as `shiftboss-server`, `shiftboss-worker`)."""

from __future__ import annotations

from typing import Any

from shiftboss.cli.output import Refusal
from shiftboss.client import Client
from shiftboss.settings import Settings, load_settings
from shiftboss.telemetry import Telemetry, configure

_configured = False


def configure_telemetry(settings: Settings, service_name: str) -> Telemetry | None:
    """`configure`, or one line saying what to install when telemetry is asked for (OTLP
    variables, SHIFTBOSS_TELEMETRY_CONSOLE) where the OpenTelemetry SDK is not installed:
    `pip install shiftboss` brings only OpenTelemetry's API."""
    try:
        return configure(settings, service_name)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise Refusal(
            "shiftboss: exporting telemetry (OTEL_EXPORTER_OTLP_* or SHIFTBOSS_TELEMETRY_CONSOLE is set) needs the "
            "telemetry extra: pip install 'shiftboss[telemetry]'"
        ) from None


def cli_client(*args: Any, **kwargs: Any) -> Client:
    global _configured
    if not _configured:
        _configured = True
        configure_telemetry(load_settings(), "shiftboss-cli")  # the SDK flushes its spans at exit
    return Client(*args, **kwargs)
