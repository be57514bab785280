"""The CLI's telemetry: its calls are traced (service `shiftboss-cli`) when the OTLP
variables or SHIFTBOSS_TELEMETRY_CONSOLE say so; spans are flushed when the command exits.

Set up on the first client a command opens, not at start: `server start` and `worker
start` set up their own (as `shiftboss-server`, `shiftboss-worker`)."""

from __future__ import annotations

from typing import Any

from shiftboss.client import Client
from shiftboss.settings import load_settings
from shiftboss.telemetry import configure

_configured = False


def cli_client(*args: Any, **kwargs: Any) -> Client:
    global _configured
    if not _configured:
        _configured = True
        configure(load_settings(), "shiftboss-cli")  # the SDK flushes its spans at exit
    return Client(*args, **kwargs)
