"""Log lines as JSON objects (`SHIFTBOSS_LOG_FORMAT=json`), each with the trace and span
it was written in, so a log search and a trace view lead to each other.

One object a line: time (UTC, ISO 8601), level, logger, message, and trace_id and span_id
(hex, as trace backends show them) when a span is current; exception when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["JsonFormatter", "JsonConsole", "configure_logging"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_api = sys.modules.get("opentelemetry.trace")
        if trace_api is not None:
            context = trace_api.get_current_span().get_span_context()
            if context.is_valid:
                line["trace_id"] = f"{context.trace_id:032x}"
                line["span_id"] = f"{context.span_id:016x}"
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """The root logger writes `text` (the default) or `json` lines to stderr."""
    if log_format not in ("text", "json"):
        raise ValueError(f"SHIFTBOSS_LOG_FORMAT: {log_format!r} is not one of text, json")
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        # The span is read when the line is written, so json needs OpenTelemetry's context.
        import opentelemetry.trace  # noqa: F401

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


#: How the worker's console styles map to levels.
_LEVELS = {"red": logging.ERROR, "yellow": logging.WARNING}


class JsonConsole:
    """Stands in for the worker's console: what it would print becomes a JSON log line."""

    def __init__(self, logger: str = "shiftboss.worker") -> None:
        self.log = logging.getLogger(logger)

    def print(self, text: Any = "", *_: Any, style: str | None = None, **__: Any) -> None:
        self.log.log(_LEVELS.get(style or "", logging.INFO), str(text).strip())
