"""`worker start --with-healthcheck`: GET /health, for a supervisor or a liveness probe.

Healthy (200) while the stream to the scheduler is up, or has been down for less than the
threshold; unhealthy (503) after that, so a probe restarts a worker that lost its scheduler
for good. The body says which, as JSON. A plain thread with the standard library's server:
the probe must answer even when the worker's event loop is busy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HealthServer:
    def __init__(self, host: str, port: int, status: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.status = status
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                if self.path.split("?")[0] not in ("/health", "/healthz"):
                    self.send_error(404, "try /health")
                    return
                healthy, body = server.status()
                payload = json.dumps(body).encode()
                self.send_response(200 if healthy else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # probes every few seconds would drown the run events

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="healthcheck", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/health"

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def stream_health(connected_since: float | None, disconnected_since: float | None, threshold: float) -> tuple[bool, dict[str, Any]]:
    """The verdict from when the stream came up or went down (monotonic seconds)."""
    now = time.monotonic()
    if connected_since is not None:
        return True, {"status": "healthy", "stream": "up", "up_seconds": round(now - connected_since, 1)}
    down = now - (disconnected_since if disconnected_since is not None else now)
    healthy = down < threshold
    return healthy, {
        "status": "healthy" if healthy else "unhealthy",
        "stream": "down",
        "down_seconds": round(down, 1),
        "threshold_seconds": threshold,
    }
