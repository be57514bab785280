"""What tracing and metrics cost on the hot path: created -> COMPLETED through the real
mesh with no-op stream workers (as in bench/test_dispatch_bench.py), telemetry off and
on, in alternating rounds so that both see the same machine. Each round's load first runs a
warm-up burst as wide as the measured one, so that the server's database connections and
their prepared statements are made before it is measured, as on a server that has been
running.

On means what `shiftboss server start` installs with an OTLP endpoint: the SDK's
TracerProvider with a BatchSpanProcessor (its exporter drops the spans, so no network
time is measured), a MeterProvider, the RPC spans, and the scheduler's spans and metrics,
with every span sampled; the load's SDK client is traced too, so calls arrive with a
trace context as a traced application's would. The server runs in this process and the
load in another (bench/_load.py), so the CPU measured is the server's. The target: less
than 10% more server CPU per run, on SQLite and on PostgreSQL (where the same cost of
tracing is a larger share of a run, which costs the server less there).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.test_dispatch_bench import mesh_on
from shiftboss import telemetry
from shiftboss.client import AsyncClient
from bench._load import WARM
from tests.conftest import drop_postgres_database

ROUNDS = 9
RUNS = 400
TARGET = 1.10
GUARD = 1.30
ROOT = Path(__file__).resolve().parents[1]


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


async def throughput(backend: str, tmp: Path, runs: int, traced_client: bool) -> tuple[float, float]:
    """Runs per second from the first CreateFlowRun to the last run's COMPLETED recorded,
    and the server's CPU time per run meanwhile (all its threads), in milliseconds.

    The load (SDK client and no-op workers) runs in a process of its own (bench/_load.py),
    so the CPU measured is the server's alone."""
    mesh, database = await mesh_on(backend, tmp)
    try:
        async with AsyncClient(f"127.0.0.1:{mesh.port}", timeout=60) as client:
            await client.create_work_pool("bench", "process")
            await client.create_deployment("burst", "bench", "flows/noop.py:noop")
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._load", f"127.0.0.1:{mesh.port}", str(runs), "1" if traced_client else "0",
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert load.stdin is not None and load.stdout is not None
        try:
            assert (await asyncio.wait_for(load.stdout.readline(), 60)).strip() == b"ready"
            # A full collection of the heap built so far lands in one round and not another;
            # set it aside so both modes only collect what the burst makes.
            gc.collect()
            gc.freeze()
            cpu = time.process_time()
            load.stdin.write(b"go\n")
            await load.stdin.drain()
            done = (await asyncio.wait_for(load.stdout.readline(), 300)).split()
            cpu = time.process_time() - cpu
            gc.unfreeze()
            assert done[:1] == [b"done"], done
            elapsed = float(done[1])
        finally:
            if load.returncode is None:
                load.stdin.close()
                await asyncio.wait_for(load.wait(), 30)
        return runs / elapsed, cpu / runs * 1000
    finally:
        await mesh.stop(0)
        if database:
            await drop_postgres_database(database)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tracing_costs_less_than_ten_percent(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The machine is shared, so wall-clock throughput swings between rounds; the server's
    CPU time per run is the steadier measure of what tracing costs, and the one held to
    the target. Both are reported."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    spans = 0

    def rounds() -> None:
        nonlocal spans
        for i in range(ROUNDS):
            with telemetry.use(None):
                off.append(asyncio.run(throughput(backend, tmp_path / f"off{i}", RUNS, traced_client=False)))
            installed, exporter = traced()
            with telemetry.use(installed):
                on.append(asyncio.run(throughput(backend, tmp_path / f"on{i}", RUNS, traced_client=True)))
            installed.shutdown()
            spans += exporter.spans

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    rate_off, rate_on = statistics.median(r for r, _ in off), statistics.median(r for r, _ in on)
    cpu_off, cpu_on = statistics.median(c for _, c in off), statistics.median(c for _, c in on)
    report(
        f"{backend}: created->COMPLETED, {RUNS} runs x {ROUNDS} rounds, 4 no-op workers, medians: "
        f"off {rate_off:.0f} runs/s, {cpu_off:.2f} ms server CPU/run; on {rate_on:.0f} runs/s, {cpu_on:.2f} ms "
        f"server CPU/run ({spans / (ROUNDS * (RUNS + WARM)):.1f} server spans/run) | CPU on/off {cpu_on / cpu_off:.3f}, "
        f"throughput on/off {rate_on / rate_off:.3f}; target CPU on/off < {TARGET}: "
        f"{'met' if cpu_on / cpu_off < TARGET else 'not met'} | rounds, ms server CPU/run: "
        f"off {' '.join(f'{c:.2f}' for _, c in off)}; on {' '.join(f'{c:.2f}' for _, c in on)}",
        off_runs_per_second=rate_off,
        on_runs_per_second=rate_on,
        off_cpu_ms_per_run=cpu_off,
        on_cpu_ms_per_run=cpu_on,
    )
    assert spans > 0, "tracing was not on"
    # The target is TARGET; rounds on this shared machine swing by more than that gap, so
    # the assertion guards against a regression (a span per stream message, per heartbeat)
    # rather than against noise, and the line above says where the run stands.
    assert cpu_on / cpu_off < GUARD, f"tracing costs {cpu_on / cpu_off - 1:.0%} more server CPU per run"
