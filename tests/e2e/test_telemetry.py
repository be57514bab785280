"""One trace across real processes: the SDK in this process, the server and a worker as
subprocesses exporting OTLP/HTTP to a collector on loopback, and the flow's own process
reading TRACEPARENT. Each hop's parent is the previous hop's span."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shiftboss import telemetry
from shiftboss.client import Client
from shiftboss.v1 import scheduler_pb2
from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env
from tests.e2e.otlp import Collector, Span, running_collector
from tests.waiting import wait_state

SERVER, CONSUMER = 2, 5  # OTLP span kinds

FLOW = textwrap.dedent(
    """
    import os

    def traced(out: str):
        with open(out, "w") as fh:
            fh.write(os.environ.get("TRACEPARENT", ""))
        print("flow ran", flush=True)
    """
)


@pytest.fixture
def collector() -> Iterator[Collector]:
    yield from running_collector()


def otlp_env(home: Path, collector: Collector, **extra: str) -> dict[str, str]:
    return base_env(
        home,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",  # export spans within a moment, not every 5 s
        OTEL_METRIC_EXPORT_INTERVAL="200",
        **extra,
    )


def one(spans: list[Span], **match: object) -> Span | None:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) <= 1, f"more than one span matches {match}: {found}"
    return found[0] if found else None


def test_one_trace_from_the_sdk_through_server_and_worker_into_the_flow(collector: Collector, tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "traced.py").write_text(FLOW)
    out = tmp_path / "traceparent.txt"
    home = tmp_path / "home"
    server = ServerProcess(home, otlp_env(home, collector, SHIFTBOSS_LOG_FORMAT="json")).start()
    worker = None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with telemetry.use(telemetry.Telemetry(provider)), Client(server.address, timeout=20) as client:
            client.create_work_pool("traced", "process")
            client.create_deployment("traced", "traced", "flows/traced.py:traced", parameters={"out": str(out)})
            worker = WorkerProcess(
                ["-p", "traced", "-n", "w1"],
                cwd=tmp_path,
                env=otlp_env(tmp_path / "worker-home", collector, SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_LOG_FORMAT="json"),
            )
            worker.wait_for_line("connected to")
            with provider.get_tracer("tests").start_as_current_span("release nightly") as caller:
                run = client.create_flow_run("traced")
            ended = wait_state(client, run.id, "COMPLETED", "FAILED", "CRASHED")
            assert scheduler_pb2.RunState.Name(ended.state) == "COMPLETED", worker.output
        trace_id = f"{caller.get_span_context().trace_id:032x}"
        sent = next(s for s in exporter.get_finished_spans() if s.name.endswith("/CreateFlowRun") and s.kind == SpanKind.CLIENT)
        assert sent.parent.span_id == caller.get_span_context().span_id

        def chain(c: Collector) -> tuple[Span, Span, Span, Span, Span] | None:
            mine = [s for s in c.spans if s.trace_id == trace_id]
            served = one(mine, name="/shiftboss.v1.SchedulerService/CreateFlowRun", kind=SERVER)
            ran = one(mine, name="run traced", kind=CONSUMER)
            render = one(mine, name="render")
            # The admission pass is a trace of its own, with a link to the run's creation.
            admission = served and next(
                (s for s in c.spans if s.name == "admission" and (trace_id, served.span_id) in [link[:2] for link in s.links]), None
            )
            return (served, render, admission, ran) if all((served, render, admission, ran)) else None

        served, render, admission, ran = collector.wait_for(chain, what="the run's spans from server and worker")
        assert served.service == render.service == admission.service == "shiftboss-server"
        assert ran.service == "shiftboss-worker"
        assert served.parent_id == f"{sent.context.span_id:016x}"  # SDK -> server
        assert render.parent_id == served.span_id
        assert admission.attributes["shiftboss.pool"] == "traced"
        assert served.attributes["shiftboss.run.id"] == run.id  # where the admission span's link leads
        assert ran.parent_id == served.span_id  # server -> worker, through Dispatch.traceparent
        assert ran.attributes["shiftboss.run.id"] == run.id
        assert ran.attributes["shiftboss.state"] == "COMPLETED"

        # worker -> the flow's own process
        version, flow_trace, flow_parent, _flags = out.read_text().split("-")
        assert (version, flow_trace, flow_parent) == ("00", trace_id, ran.span_id)

        # the worker's log lines about the run name the run's span
        logged = [json.loads(line) for line in worker.lines if line.startswith("{")]
        started = next(line for line in logged if line["message"].startswith("run ") and line["message"].endswith(" started"))
        assert (started["trace_id"], started["span_id"]) == (trace_id, ran.span_id)
        assert started["logger"] == "shiftboss.worker" and started["level"] == "INFO"

        finished = collector.wait_for(
            lambda c: [p for p in c.points if p[1] == "shiftboss.runs.finished" and p[2].get("shiftboss.state") == "COMPLETED"],
            what="shiftboss.runs.finished from the server",
        )
        assert finished[-1][0] == "shiftboss-server" and finished[-1][3] == 1

        # the server's log line about the worker's stream names the stream's span
        worker.stop()
        connect = collector.wait_for(
            lambda c: one(c.spans, name="/shiftboss.v1.SchedulerService/Connect", kind=SERVER), what="the Connect span"
        )
        logged = [json.loads(line) for line in server.lines if line.startswith("{")]
        connected = next(line for line in logged if line["message"].startswith("worker traced/w1 connected"))
        assert (connected["trace_id"], connected["span_id"]) == (connect.trace_id, connect.span_id)
        assert connected["logger"] == "shiftboss.scheduler"
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        provider.shutdown()


def test_cli_spans_go_to_stderr_with_the_console_exporter(tmp_path: Path) -> None:
    """SHIFTBOSS_TELEMETRY_CONSOLE=1 prints spans on stderr; stdout stays the command's answer."""
    home = tmp_path / "home"
    server = ServerProcess(home, base_env(home)).start()
    try:
        env = base_env(tmp_path / "cli-home", SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_TELEMETRY_CONSOLE="1")
        done = subprocess.run([str(BIN), "work-pool", "ls", "-o", "json"], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert '"name": "/shiftboss.v1.PoolService/ListWorkPools"' in done.stderr
    assert '"service.name": "shiftboss-cli"' in done.stderr
