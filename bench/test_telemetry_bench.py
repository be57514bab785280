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
load in another (bench/_load.py), so what is measured is the server's. The target: with
tracing on, the server does less than 10% more work per run, on SQLite and on PostgreSQL
(where the same cost of tracing is a larger share of a run, which costs the server less).

CPU time on a shared 2-core machine swings from round to round by more than the 10% it is
held to (the load and PostgreSQL run on the same two cores), so the same rounds are also
counted in instructions under callgrind, which hardly swing: that test holds the target;
the CPU-time test reports, and guards against a gross regression.
"""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench._load import WARM
from bench.test_dispatch_bench import mesh_on
from shiftboss import telemetry
from shiftboss.client import AsyncClient
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


async def throughput(
    backend: str, tmp: Path, runs: int, traced_client: bool, burst: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> tuple[float, float]:
    """Runs per second from the first CreateFlowRun to the last run's COMPLETED recorded,
    and the server's CPU time per run meanwhile (all its threads), in milliseconds.

    The load (SDK client and no-op workers) runs in a process of its own (bench/_load.py),
    so the CPU measured is the server's alone. `burst` is entered for the measured burst
    alone (bench/_instructions.py counts instructions in it)."""
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
            assert (await asyncio.wait_for(load.stdout.readline(), 300)).strip() == b"ready"
            # A full collection of the heap built so far lands in one round and not another;
            # set it aside so both modes only collect what the burst makes.
            gc.collect()
            gc.freeze()
            with burst():
                cpu = time.process_time()
                load.stdin.write(b"go\n")
                await load.stdin.drain()
                done = (await asyncio.wait_for(load.stdout.readline(), 900)).split()
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
    CPU time per run swings less, but still by more than the target allows. Both are
    reported against the target; the instruction count below is the one held to it."""
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


#: Runs per round counted under callgrind, which runs the server some fifty times slower.
COUNTED_RUNS = 300


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind (callgrind) is not installed")
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tracing_costs_less_than_ten_percent_in_instructions(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same rounds counted in the server's user-space instructions during the burst
    (bench/_instructions.py), which swing much less than CPU time on a shared machine: no
    other process's work, cache or scheduling enters them. They leave out the kernel's
    time. Both modes run side by side, so that each sees the other's load."""
    counts: dict[str, int] = {}

    def both() -> None:
        rounds = {
            mode: subprocess.Popen(
                [
                    "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={tmp_path / mode}.out",
                    sys.executable, "-m", "bench._instructions", backend, mode, str(COUNTED_RUNS),
                ],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for mode in ("off", "on")
        }
        for mode, process in rounds.items():
            _, err = process.communicate(timeout=1200)
            assert process.returncode == 0, err[-3000:]
            counts[mode] = int(re.search(r"Collected : (\d+)", err).group(1))  # type: ignore[union-attr]

    benchmark.pedantic(both, rounds=1, iterations=1)
    off, on = counts["off"] / COUNTED_RUNS, counts["on"] / COUNTED_RUNS
    report(
        f"{backend}: created->COMPLETED, {COUNTED_RUNS} runs, server instructions/run (callgrind): off {off / 1e6:.2f} M, "
        f"on {on / 1e6:.2f} M | on/off {on / off:.3f}; target < {TARGET}: {'met' if on / off < TARGET else 'not met'}",
        off_instructions_per_run=off,
        on_instructions_per_run=on,
    )
    assert on / off < TARGET, f"tracing costs {on / off - 1:.0%} more instructions per run"
