"""An OTLP/HTTP sink for bench/test_telemetry_bench.py, in a process of its own so that
what it does is not counted as the server's: it answers every export as a collector
would, and counts the spans it received.

    python -m bench._sink     prints `PORT`, then serves until stdin closes

GET /spans answers the number of spans received so far.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

_spans = 0
_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        global _spans
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            with _lock:
                _spans += sum(len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans)
            answer = ExportTraceServiceResponse().SerializeToString()
        else:
            answer = ExportMetricsServiceResponse().SerializeToString()
        self._answer("application/x-protobuf", answer)

    def do_GET(self) -> None:  # noqa: N802
        with _lock:
            self._answer("text/plain", str(_spans).encode())

    def _answer(self, kind: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
