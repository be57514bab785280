"""A tiny OTLP/HTTP collector on loopback: what real processes export, decoded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

T = TypeVar("T")


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    #: (trace id, span id, attributes) of each link
    links: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _service(resource: Any) -> str:
    return next((_value(a.value) for a in resource.attributes if a.key == "service.name"), "")


@dataclass
class Collector:
    spans: list[Span] = field(default_factory=list)
    #: (service, metric name, attributes, value) of every number data point received
    points: list[tuple[str, str, dict[str, Any], float]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, path: str, body: bytes) -> bytes:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            spans = [
                Span(
                    _service(rs.resource), s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind,
                    {a.key: _value(a.value) for a in s.attributes},
                    [(link.trace_id.hex(), link.span_id.hex(), {a.key: _value(a.value) for a in link.attributes}) for link in s.links],
                )
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            ]
            with self.changed:
                self.spans.extend(spans)
                self.changed.notify_all()
            return ExportTraceServiceResponse().SerializeToString()
        if path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            points = []
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        for point in getattr(data, "data_points", []):
                            value = getattr(point, point.WhichOneof("value"), 0) if hasattr(point, "as_int") else point.count
                            points.append((_service(rm.resource), metric.name, {a.key: _value(a.value) for a in point.attributes}, value))
            with self.changed:
                self.points.extend(points)
                self.changed.notify_all()
            return ExportMetricsServiceResponse().SerializeToString()
        raise KeyError(path)

    def wait_for(self, found: Callable[[Collector], T | None], timeout: float = 20.0, what: str = "data") -> T:
        """Wait until `found` returns something (it is asked again at every export)."""
        with self.changed:
            result: list[T] = []

            def ready() -> bool:
                value = found(self)
                if value:
                    result.append(value)
                return bool(value)

            if not self.changed.wait_for(ready, timeout):
                names = sorted({(s.service, s.name) for s in self.spans})
                raise AssertionError(f"timed out waiting for {what}; spans received: {names}")
            return result[0]


def start_collector() -> Collector:
    collector = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                reply = collector.receive(self.path, body)
            except KeyError:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    collector.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=collector.server.serve_forever, daemon=True).start()
    return collector


def running_collector() -> Iterator[Collector]:
    collector = start_collector()
    try:
        yield collector
    finally:
        assert collector.server is not None
        collector.server.shutdown()
        collector.server.server_close()
