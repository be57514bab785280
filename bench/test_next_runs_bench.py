"""`work-pool next` (NextRuns) with a million runs waiting, through the server: the reply's
latency from the SDK call, and the longest the server's event loop stood still meanwhile.

The server runs in this process (as bench/test_telemetry_bench.py runs its own), so that a
probe on its event loop sees every stall: a task that asks to wake every millisecond and
notes how late it woke. The million runs go straight into the scheduler's table while the
server is stopped (through the API it would take minutes); the restarted server loads them
into the core as any restart does, and that start is timed too.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.test_dispatch_bench import database_for
from shiftboss.client import AsyncClient
from shiftboss.services.db import open_database, release_database
from shiftboss.services.mesh import Mesh
from shiftboss.settings import load_settings
from shiftboss.v1 import scheduler_pb2
from tests.conftest import drop_postgres_database

QUEUED = 1_000_000
#: NextRuns calls measured, one at a time, each asking for the next 10 runs.
CALLS = 1_000
QUEUES = 10

#: A recursive series of QUEUED numbers (SQLite has no generate_series of its own).
_SERIES = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) ",
    "postgres": "WITH n(i) AS (SELECT generate_series(1, :count)) ",
}
_START = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day', '+' || (i % 86400) || ' seconds')",
    "postgres": "now() + interval '1 day' + (i % 86400) * interval '1 second'",
}
_ID = {"sqlite": "printf('%032x', i)", "postgres": "lpad(to_hex(i), 32, '0')"}


async def queue_runs(url: str, backend: str, count: int) -> None:
    """`count` runs due over tomorrow, spread over the pool's queues, written by one statement."""
    db = open_database(url)
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    _SERIES[backend]
                    + "INSERT INTO flow_runs (id, name, deployment, pool, queue, entrypoint, parameters, job_variables,"
                    " job_configuration, scheduled_start, state, message, worker, lease, created, traceparent, retries,"
                    " retry_delay_seconds, run_count, state_name) "
                    f"SELECT {_ID[backend]}, 'queued', 'noop', 'bench', 'q' || (i % {QUEUES}), 'flows/noop.py:noop',"
                    f" '{{}}', '{{}}', '{{}}', {_START[backend]}, 'SCHEDULED', '', '', 0, {_START[backend]}, '', 0, 0, 0, ''"
                    " FROM n"
                ),
                {"count": count},
            )
        if not db.is_sqlite:
            async with db.transaction() as session:
                await session.execute(text("ANALYZE flow_runs"))
    finally:
        await release_database(db)


class LoopProbe:
    """How late a task that sleeps a millisecond at a time wakes: the loop's stalls. On a
    shared machine a stall may be the process waiting for a core, not the loop busy: the
    loop thread's CPU time over the same sleep tells the two apart (`worst_busy`)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_busy = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)
            self.worst_busy = max(self.worst_busy, time.thread_time() - cpu)

    def __enter__(self) -> LoopProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def started_mesh(url: str, home: Path) -> Mesh:
    mesh = Mesh(load_settings(environ={"SHIFTBOSS_HOME": str(home)}, database_url=url, port=0, host="127.0.0.1"))
    port = await mesh.start()
    mesh.settings = mesh.settings.replace(api_address=f"127.0.0.1:{port}")
    mesh.peers.settings = mesh.settings
    return mesh


async def scenario(backend: str, tmp: Path) -> dict[str, float]:
    url, database = await database_for(backend, tmp)
    try:
        mesh = await started_mesh(url, tmp)
        address = mesh.settings.api_address
        async with AsyncClient(address, timeout=60) as client:
            await client.create_work_pool("bench", "process")
            for q in range(QUEUES):
                await client.create_work_queue(f"q{q}", "bench", priority=q + 1)
        await mesh.stop(0)

        began = time.perf_counter()
        await queue_runs(url, backend, QUEUED)
        written = time.perf_counter() - began

        began = time.perf_counter()
        mesh = await started_mesh(url, tmp)
        start_seconds = time.perf_counter() - began
        try:
            async with AsyncClient(mesh.settings.api_address, timeout=60) as client:
                usage = await client._invoke("SchedulerService", "GetPoolUsage", scheduler_pb2.PoolUsageRequest(pool="bench"))
                assert usage.waiting == QUEUED, usage
                first = await client.next_runs("bench", limit=10, prefetch_seconds=2 * 86400)
                assert len(first.flow_runs) == 10
                latencies = []
                loop = asyncio.get_running_loop()
                if os.environ.get("SHIFTBOSS_BENCH_STALLS"):  # name what stalls the loop
                    loop.set_debug(True)
                    loop.slow_callback_duration = 0.05
                with LoopProbe() as probe:
                    for _ in range(CALLS):
                        called = time.perf_counter()
                        reply = await client.next_runs("bench", limit=10, prefetch_seconds=2 * 86400)
                        latencies.append(time.perf_counter() - called)
                        assert len(reply.flow_runs) == 10
                    await asyncio.sleep(0.01)  # the probe's last wake
        finally:
            await mesh.stop(0)
    finally:
        if database is not None:
            await drop_postgres_database(database)
    latencies.sort()
    return {
        "write_seconds": written,
        "start_seconds": start_seconds,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "loop_stall_ms": probe.worst * 1e3,
        "loop_busy_ms": probe.worst_busy * 1e3,
        "load": os.getloadavg()[0],
    }


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_next_runs_through_the_server_at_a_million_queued(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    figures = benchmark.pedantic(lambda: asyncio.run(scenario(backend, tmp_path)), rounds=1, iterations=1)
    report(
        f"{backend}, {QUEUED:,} runs waiting in {QUEUES} queues: NextRuns (10 runs) from the SDK call p50 "
        f"{figures['p50_ms']:.2f} ms p99 {figures['p99_ms']:.2f} ms; the event loop's longest stall meanwhile "
        f"{figures['loop_stall_ms']:.1f} ms, of which the loop's thread ran {figures['loop_busy_ms']:.1f} ms (same "
        f"process: the client's share included; load {figures['load']:.1f}); the server started with them in "
        f"{figures['start_seconds']:.1f} s",
        **figures,
    )
