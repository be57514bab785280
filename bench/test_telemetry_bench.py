"""What tracing and metrics cost on the hot path: created -> COMPLETED throughput through
the real mesh with no-op stream workers (bench/test_dispatch_bench.py), telemetry off and
on, in alternating rounds so that both see the same machine.

On means what `shiftboss server start` installs with an OTLP endpoint: the SDK's
TracerProvider with a BatchSpanProcessor (its exporter drops the spans, so no network
time is measured), a MeterProvider, every interceptor, and the scheduler's spans and
metrics, with every span sampled. The SDK client in this process is traced too, as a
traced application's would be. The target: on costs less than 10% of throughput.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.test_dispatch_bench import NoopWorker, Tally, mesh_on
from shiftboss import telemetry
from shiftboss.client import AsyncClient
from tests.conftest import drop_postgres_database

ROUNDS = 5
RUNS = 300
WORKERS = 4


class DroppingExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def traced() -> tuple[telemetry.Telemetry, DroppingExporter]:
    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return telemetry.Telemetry(tracer_provider, meter_provider, owned=True), exporter


async def throughput(backend: str, tmp: Path, runs: int) -> tuple[float, float]:
    """Runs per second from the first CreateFlowRun to the last run's COMPLETED recorded,
    and this process's CPU time per run meanwhile (all threads), in milliseconds."""
    mesh, database = await mesh_on(backend, tmp)
    try:
        async with AsyncClient(f"127.0.0.1:{mesh.port}", timeout=60) as client:
            await client.create_work_pool("bench", "process")
            await client.create_deployment("burst", "bench", "flows/noop.py:noop")
            tally = Tally()
            workers = [NoopWorker(client, f"w{i}", "bench", tally) for i in range(WORKERS)]
            for worker in workers:
                await worker.start()
            await client.create_flow_run("burst")  # warm: the first run pays for lazy setup
            await tally.wait_for(1)
            sem = asyncio.Semaphore(32)

            async def create() -> None:
                async with sem:
                    await client.create_flow_run("burst")

            # A full collection of the heap built so far lands in one round and not another;
            # set it aside so both modes only collect what the burst makes.
            gc.collect()
            gc.freeze()
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(create() for _ in range(runs)))
            await tally.wait_for(runs + 1)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            gc.unfreeze()
            for worker in workers:
                await worker.stop()
        return runs / elapsed, cpu / runs * 1000
    finally:
        await mesh.stop(0)
        if database:
            await drop_postgres_database(database)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_tracing_costs_less_than_ten_percent(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The machine is shared, so wall-clock throughput swings between rounds; the CPU time
    this process spends per run is the steadier measure of what tracing costs, and the
    one held to the target. Both are reported."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    spans = 0

    def rounds() -> None:
        nonlocal spans
        for i in range(ROUNDS):
            with telemetry.use(None):
                off.append(asyncio.run(throughput(backend, tmp_path / f"off{i}", RUNS)))
            installed, exporter = traced()
            with telemetry.use(installed):
                on.append(asyncio.run(throughput(backend, tmp_path / f"on{i}", RUNS)))
            installed.shutdown()
            spans += exporter.spans

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    rate_off, rate_on = statistics.median(r for r, _ in off), statistics.median(r for r, _ in on)
    cpu_off, cpu_on = statistics.median(c for _, c in off), statistics.median(c for _, c in on)
    report(
        f"{backend}: created->COMPLETED, {RUNS} runs x {ROUNDS} rounds, {WORKERS} no-op workers, medians: "
        f"off {rate_off:.0f} runs/s, {cpu_off:.2f} ms CPU/run; on {rate_on:.0f} runs/s, {cpu_on:.2f} ms CPU/run "
        f"({spans / (ROUNDS * (RUNS + 1)):.1f} spans/run) | CPU on/off {cpu_on / cpu_off:.3f}, "
        f"throughput on/off {rate_on / rate_off:.3f}",
        off_runs_per_second=rate_off,
        on_runs_per_second=rate_on,
        off_cpu_ms_per_run=cpu_off,
        on_cpu_ms_per_run=cpu_on,
    )
    assert spans > 0, "tracing was not on"
    assert cpu_on / cpu_off < 1.10, f"tracing costs {cpu_on / cpu_off - 1:.0%} more CPU per run"
