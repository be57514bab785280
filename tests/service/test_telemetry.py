"""Traces and metrics of a real mesh, exported in memory: one trace from the caller to the
dispatched run (across a restart too), RPC status codes, the metrics users alert on, and
the worker's run span and reconnect count."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shiftboss import errors, telemetry
from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from shiftboss.workers.daemon import Daemon, Options
from shiftboss.workers.telemetry import WorkerTelemetry
from tests.conftest import close_abandoned_connections, scheduler

CREATE = "/shiftboss.v1.SchedulerService/CreateFlowRun"
RENDER = "/shiftboss.v1.TemplateService/Render"


@dataclass
class Otel:
    installed: telemetry.Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    @property
    def tracer(self) -> Any:
        return self.installed.tracer("tests")

    def finished(self, name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name and (kind is None or s.kind == kind)]

    def one(self, name: str, kind: SpanKind | None = None, trace_id: int | None = None) -> ReadableSpan:
        found = [s for s in self.finished(name, kind) if trace_id is None or s.context.trace_id == trace_id]
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in self.spans.get_finished_spans()]}"
        return found[0]

    async def ended(self, name: str, kind: SpanKind) -> ReadableSpan:
        """The one span named so, once it has ended: a server span ends when its handler
        unwinds, which may be just after the caller has its answer."""
        deadline = asyncio.get_running_loop().time() + 5
        while not self.finished(name, kind) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return self.one(name, kind)

    async def points(self, metric: str) -> list[Any]:
        """The metric's data points, collected on another thread as a periodic reader would."""
        data = await asyncio.to_thread(self.metrics.get_metrics_data)
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]

    async def values(self, metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        return {tuple(sorted(p.attributes.items())): getattr(p, "value", None) for p in await self.points(metric)}


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    installed = telemetry.Telemetry(tracer_provider, MeterProvider(metric_readers=[metrics]))
    with telemetry.use(installed):
        yield Otel(installed, spans, metrics)
    tracer_provider.shutdown()
    installed.meter_provider.shutdown()


async def start_mesh(settings: Settings) -> Mesh:
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1"))
    port = await mesh.start()
    mesh.settings = mesh.peers.settings = mesh.settings.replace(api_address=f"127.0.0.1:{port}")
    return mesh


@pytest.fixture
async def traced_mesh(otel: Otel, settings: Settings) -> AsyncIterator[Mesh]:
    mesh = await start_mesh(settings)
    try:
        yield mesh
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


async def next_message(stream: WorkerStream, kind: str) -> Any:
    while True:
        message = await stream.receive(timeout=10)
        assert message is not None, f"the stream ended before a {kind}"
        if message.WhichOneof("kind") == kind:
            return getattr(message, kind)


def traceparent(span: ReadableSpan) -> str:
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{int(span.context.trace_flags):02x}"


def linking(otel: Otel, served: ReadableSpan) -> tuple[ReadableSpan, Any]:
    """The one admission span with a link to `served` (a CreateFlowRun's server span), and that link."""
    found = [
        (span, link)
        for span in otel.finished("admission")
        for link in span.links
        if link.context.span_id == served.context.span_id and link.context.trace_id == served.context.trace_id
    ]
    assert len(found) == 1, f"{len(found)} admission spans link to the run's creation"
    return found[0]


async def test_a_run_is_one_trace_from_the_caller_to_the_worker(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool("etl", "process")
        await client.create_deployment("nightly", "etl", "flows/etl.py:run")
        worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl"))
        await worker.open()
        with otel.tracer.start_as_current_span("caller") as caller:
            run = await client.create_flow_run("nightly")
        dispatch = await next_message(worker, "dispatch")
        await worker.close()
    assert dispatch.run == run.id
    trace_id = caller.get_span_context().trace_id

    sent = otel.one(CREATE, SpanKind.CLIENT, trace_id)
    served = otel.one(CREATE, SpanKind.SERVER, trace_id)
    render = otel.one("render", trace_id=trace_id)
    rendered = otel.one(RENDER, SpanKind.SERVER, trace_id)
    assert sent.parent.span_id == caller.get_span_context().span_id
    assert served.parent.span_id == sent.context.span_id
    assert render.parent.span_id == served.context.span_id
    assert rendered.parent.span_id == render.context.span_id
    # The worker continues the caller's trace: its run span is a child of the creation.
    assert dispatch.traceparent == traceparent(served)

    assert served.attributes["rpc.service"] == "shiftboss.v1.SchedulerService"
    assert served.attributes["rpc.method"] == "CreateFlowRun"
    assert served.attributes["rpc.grpc.status_code"] == 0
    assert served.attributes["shiftboss.run.id"] == run.id  # what the admission span's link leads to
    admission, _ = linking(otel, served)
    assert admission.parent is None  # a pass has no caller: a root, sampled on its own
    assert admission.attributes["shiftboss.pool"] == "etl"
    assert admission.attributes["shiftboss.admission.runs"] == 1


async def test_a_run_created_before_a_restart_keeps_its_callers_trace(otel: Otel, settings: Settings) -> None:
    """The context is stored with the run, not held in memory: a run created before a
    restart is dispatched afterwards as part of its creator's trace."""
    mesh = await start_mesh(settings)
    try:
        async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
            await client.create_work_pool("etl", "process")
            await client.create_deployment("nightly", "etl", "flows/etl.py:run")
            with otel.tracer.start_as_current_span("caller") as caller:
                run = await client.create_flow_run("nightly")  # no worker yet: it waits
    finally:
        await mesh.stop(0)
    served = otel.one(CREATE, SpanKind.SERVER, caller.get_span_context().trace_id)
    assert not otel.finished("admission")

    mesh = await start_mesh(settings)
    try:
        async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
            worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl"))
            await worker.open()
            dispatch = await next_message(worker, "dispatch")
            await worker.close()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()
    assert dispatch.run == run.id
    assert dispatch.traceparent == traceparent(served)
    linking(otel, served)


async def test_one_admission_span_for_a_pass_links_every_run_it_sent(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool("etl", "process")
        await client.create_deployment("nightly", "etl", "flows/etl.py:run")
        callers, runs = [], []
        for _ in range(5):  # no worker yet: they wait
            with otel.tracer.start_as_current_span("caller") as caller:
                runs.append(await client.create_flow_run("nightly"))
            callers.append(caller.get_span_context())
        worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl", limit=5))
        await worker.open()
        dispatched = {(await next_message(worker, "dispatch")).run for _ in runs}
        await worker.close()
    assert dispatched == {run.id for run in runs}
    (admission,) = otel.finished("admission")  # the worker's arrival admits all five at once
    assert admission.attributes["shiftboss.admission.runs"] == 5
    linked = {(link.context.trace_id, link.context.span_id) for link in admission.links}
    made = set()
    for caller, run in zip(callers, runs):
        served = otel.one(CREATE, SpanKind.SERVER, caller.trace_id)
        assert served.attributes["shiftboss.run.id"] == run.id
        made.add((served.context.trace_id, served.context.span_id))
    assert linked == made


async def test_a_run_made_by_a_schedule_is_part_of_its_admission_pass(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool("etl", "process")
        # The schedule's first run is an hour ahead: within this worker's prefetch, and the
        # second, two hours ahead, not (else it may go out in a pass of its own).
        worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl", prefetch_seconds=5400))
        await worker.open()
        await client.create_deployment("hourly", "etl", "flows/etl.py:run", interval=3600)
        dispatch = await next_message(worker, "dispatch")
        await worker.close()
    admission = otel.one("admission")
    assert admission.parent is None
    assert not admission.links  # no caller to link to
    assert dispatch.traceparent == traceparent(admission)


@pytest.fixture
def sampled_by_callers_only() -> Iterator[Otel]:
    """Telemetry as `telemetry_sample_ratio` 0 would install it (parent-based, so the server
    asks for no span for a caller that did not sample its call): only what a sampled caller
    asks for is recorded."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    installed = telemetry.Telemetry(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]), follows_parent=True)
    with telemetry.use(installed):
        yield Otel(installed, spans, InMemoryMetricReader())
    tracer_provider.shutdown()
    installed.meter_provider.shutdown()


async def test_sampling_follows_the_caller_and_the_ratio(sampled_by_callers_only: Otel, settings: Settings) -> None:
    otel = sampled_by_callers_only
    always = TracerProvider().get_tracer("caller")  # an application that samples everything
    mesh = await start_mesh(settings)
    try:
        async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
            await client.create_work_pool("etl", "process")
            await client.create_deployment("nightly", "etl", "flows/etl.py:run")
            worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl", limit=2))
            await worker.open()
            left_out = await client.create_flow_run("nightly")  # a root at ratio 0: not sampled
            with always.start_as_current_span("caller") as caller:
                kept = await client.create_flow_run("nightly")
            sent = {}
            for _ in range(2):
                message = await next_message(worker, "dispatch")
                sent[message.run] = message
            await worker.close()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()
    served = otel.finished(CREATE, SpanKind.SERVER)
    assert [s.context.trace_id for s in served] == [caller.get_span_context().trace_id]  # the sampled caller's only
    assert not otel.finished("admission")  # passes are roots: ratio 0 samples none
    assert sent[kept.id].traceparent == traceparent(served[0])
    # Carried, unsampled, so the worker does not sample it either.
    assert sent[left_out.id].traceparent and not int(sent[left_out.id].traceparent[-2:], 16) & 1


async def test_rpc_spans_record_the_status_the_caller_got(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        with pytest.raises(errors.NotFound):
            await client.get_flow_run("no-such-run")
    served = await otel.ended("/shiftboss.v1.SchedulerService/GetFlowRun", SpanKind.SERVER)
    sent = otel.one("/shiftboss.v1.SchedulerService/GetFlowRun", SpanKind.CLIENT)
    assert served.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND, not UNKNOWN
    assert served.status.status_code == StatusCode.UNSET  # the caller's mistake, not the server's fault
    assert sent.attributes["rpc.grpc.status_code"] == 5
    assert sent.status.status_code == StatusCode.ERROR


async def test_a_call_refused_before_its_servicer_still_gets_its_span(otel: Otel, settings: Settings) -> None:
    """The document limit refuses a request before the servicer sees it: the call's span is
    there all the same, with the code the caller got."""
    mesh = await start_mesh(settings.replace(max_document_bytes=2048))
    try:
        async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
            await client.create_work_pool("etl", "process")
            with pytest.raises(errors.InvalidArgument):
                await client.create_deployment("big", "etl", "flows/etl.py:run", parameters={"blob": "x" * 4000})
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()
    served = await otel.ended("/shiftboss.v1.SchedulerService/CreateDeployment", SpanKind.SERVER)
    assert served.attributes["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    assert served.status.status_code == StatusCode.UNSET


async def test_metrics_of_queues_slots_dispatch_and_outcomes(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool("etl", "process", concurrency_limit=3)
        await client.create_work_queue("slow", "etl", concurrency_limit=1)
        await client.create_deployment("nightly", "etl", "flows/etl.py:run", queue="slow")
        worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl"))
        await worker.open()
        first = await client.create_flow_run("nightly")
        second = await client.create_flow_run("nightly")
        dispatch = await next_message(worker, "dispatch")
        assert dispatch.run == first.id  # the queue's limit holds the second back

        slow, default = (("shiftboss.pool", "etl"), ("shiftboss.queue", "slow")), (("shiftboss.pool", "etl"), ("shiftboss.queue", "default"))
        pool = (("shiftboss.pool", "etl"),)
        assert await otel.values("shiftboss.runs.queued") == {slow: 1, default: 0}
        assert await otel.values("shiftboss.queue.slots.occupied") == {slow: 1, default: 0}
        assert await otel.values("shiftboss.queue.slots.limit") == {slow: 1}
        assert await otel.values("shiftboss.pool.slots.occupied") == {pool: 1}
        assert await otel.values("shiftboss.pool.slots.limit") == {pool: 3}
        assert await otel.values("shiftboss.workers.online") == {pool: 1}

        worker.ack(dispatch)
        worker.finished(dispatch.run, dispatch.lease, "COMPLETED", exit_code=0)
        dispatch = await next_message(worker, "dispatch")
        assert dispatch.run == second.id
        worker.ack(dispatch)
        worker.finished(dispatch.run, dispatch.lease, "FAILED", exit_code=1)
        while (await next_message(worker, "settled")).run != second.id:
            pass
        await worker.close()

    finished = await otel.values("shiftboss.runs.finished")
    assert finished == {
        (*slow, ("shiftboss.state", "COMPLETED")): 1,
        (*slow, ("shiftboss.state", "FAILED")): 1,
    }
    assert await otel.values("shiftboss.runs.queued") == {slow: 0, default: 0}
    delays = {tuple(sorted(p.attributes.items())): p for p in await otel.points("shiftboss.dispatch.delay")}
    assert delays[slow].count == 2
    assert delays[slow].min >= 0


class Console:
    """Stands in for the worker's console; tells when a line with some text is printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.printed = asyncio.Event()

    def print(self, text: Any = "", *args: Any, **kwargs: Any) -> None:
        self.lines.append(str(text))
        self.printed.set()

    async def wait_for(self, text: str, count: int = 1) -> None:
        async def seen() -> None:
            while sum(text in line for line in self.lines) < count:
                self.printed.clear()
                await self.printed.wait()

        try:
            await asyncio.wait_for(seen(), 10)
        except TimeoutError:
            raise AssertionError(f"the worker did not print {text!r} {count} times:\n" + "\n".join(self.lines)) from None


async def test_worker_traces_each_run_and_counts_reconnects(otel: Otel, traced_mesh: Mesh) -> None:
    async with AsyncClient(traced_mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool("etl", "noop")
        await client.create_deployment("nightly", "etl", "flows/etl.py:run")
        console = Console()
        options = Options(pool="etl", name="w1", queues=[], address=traced_mesh.settings.api_address, connect_timeout=10)
        daemon = Daemon(options, console=console)  # type: ignore[arg-type]
        daemon.telemetry = WorkerTelemetry(otel.installed, "etl", "w1")
        serving = asyncio.create_task(daemon.serve())
        try:
            await console.wait_for("connected to")
            assert await otel.values("shiftboss.worker.reconnects") == {}
            scheduler(traced_mesh).dispatcher.sessions["etl/w1"].close()  # the stream drops, as when a replica goes away
            await console.wait_for("connected to", count=2)
            run = await client.create_flow_run("nightly")
            await console.wait_for("finished COMPLETED")
        finally:
            daemon.begin_stop()
            await asyncio.wait_for(serving, 20)

    assert await otel.values("shiftboss.worker.reconnects") == {(("shiftboss.pool", "etl"), ("shiftboss.worker", "w1")): 1}
    served = otel.one(CREATE, SpanKind.SERVER)
    ran = otel.one("run nightly", SpanKind.CONSUMER)
    assert ran.parent.span_id == served.context.span_id  # the run's creation, through Dispatch.traceparent
    assert ran.context.trace_id == served.context.trace_id
    assert ran.attributes["shiftboss.run.id"] == run.id
    assert ran.attributes["shiftboss.state"] == "COMPLETED"
    assert ran.status.status_code == StatusCode.UNSET


async def test_with_telemetry_off_nothing_is_traced(settings: Settings) -> None:
    with telemetry.use(None):
        mesh = await start_mesh(settings)
        try:
            assert mesh.telemetry is None
            async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
                assert type(client.channel).__module__.startswith("grpc")  # the plain channel, no wrapper
                await client.create_work_pool("etl", "process")
                await client.create_deployment("nightly", "etl", "flows/etl.py:run")
                worker = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl"))
                await worker.open()
                await client.create_flow_run("nightly")
                dispatch = await next_message(worker, "dispatch")
                await worker.close()
        finally:
            await mesh.stop(0)
            await close_abandoned_connections()
    assert dispatch.traceparent == ""
