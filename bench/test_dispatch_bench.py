"""Push dispatch end to end through a real server: latency and throughput, SQLite and PostgreSQL.

The server is `shiftboss server start` in its own process, as users run it. Latency is one
run at a time, from the user's CreateFlowRun call to a stream client in this process
holding its Dispatch. Throughput is what a user running many runs pays, from the first
create call until each run is COMPLETED, served by four real `shiftboss worker start --type
noop` processes and counted in the database itself (so that counting costs the server
nothing); the server's CPU time per run (user and system, from /proc) is read around each
burst. Runs are created two ways: in bulk, `create_flow_runs` calls of BULK_BATCH runs with
BULK_IN_FLIGHT calls in flight (the headline figure), and one CreateFlowRun call per run,
32 in flight; each is the median of three bursts, with the slowest and fastest shown. Then
the stream alone: a burst created while the pool is paused (what creating costs the
server, apart) and served once it is resumed, queued -> COMPLETED.

SHIFTBOSS_BENCH_BASELINE names another `shiftboss` command (another checkout's venv, say
main's): its server and workers are then measured too, in the same run right before
ours, and the figures are given as ratios of it, with the machine's load beside them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import load_settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_url
from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env

BACKENDS = ["sqlite", "postgres"]
#: Runs measured, one at a time for latency and 32 in flight for throughput.
RUNS = 2_000
#: Runs already waiting (due tomorrow) in the loaded scenario.
QUEUED = 10_000
#: Throughput is the median of this many bursts of RUNS: the machine is shared, and one
#: burst of two seconds can land on a busy moment.
BURSTS = 3
#: Runs of one bulk burst, created BULK_BATCH to a `create_flow_runs` call with
#: BULK_IN_FLIGHT calls in flight.
BULK_RUNS, BULK_BATCH, BULK_IN_FLIGHT = 10_000, 250, 4
#: Worker processes serving the throughput bursts.
WORKERS = 4
#: Another `shiftboss` command to measure side by side (before vs after).
BASELINE = os.environ.get("SHIFTBOSS_BENCH_BASELINE", "")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Tally:
    """Runs whose COMPLETED the scheduler has recorded (it answers each with Settled)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.target and self.count >= self.target:
            self.reached.set()

    async def wait_for(self, target: int, timeout: float = 300) -> None:
        self.target = target
        if self.count >= target:
            return
        await asyncio.wait_for(self.reached.wait(), timeout)


class NoopWorker:
    def __init__(self, client: AsyncClient, name: str, pool: str, tally: Tally | None = None) -> None:
        self.stream = WorkerStream(client, scheduler_pb2.Hello(name=name, pool=pool))
        self.received: dict[str, float] = {}
        #: Set at every Dispatch, for a caller waiting for one.
        self.dispatched = asyncio.Event()
        self.tally = tally or Tally()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.stream.open()
        self.task = asyncio.create_task(self.serve())

    async def serve(self) -> None:
        while True:
            message = await self.stream.receive()
            if message is None:
                return
            if message.WhichOneof("kind") == "settled":
                self.tally.add()
            if message.WhichOneof("kind") != "dispatch":
                continue
            dispatch = message.dispatch
            self.received[dispatch.run] = time.perf_counter()
            self.dispatched.set()
            self.stream.started(dispatch.run, dispatch.lease)  # Started acknowledges the dispatch
            self.stream.finished(dispatch.run, dispatch.lease, "COMPLETED", exit_code=0)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.stream.close()


async def database_for(backend: str, tmp: Path) -> tuple[str, str | None]:
    """A fresh database: its URL, and its name on PostgreSQL (to drop afterwards)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'bench.db'}", None
    name = await create_postgres_database()
    return postgres_url(name), name


async def mesh_on(backend: str, tmp: Path) -> tuple[Mesh, str | None]:
    """Every service in this process, on a fresh database (bench/test_telemetry_bench.py
    runs its server this way, with the load in another process)."""
    url, name = await database_for(backend, tmp)
    settings = load_settings(environ={"SHIFTBOSS_HOME": str(tmp)}, database_url=url, port=0, heartbeat_seconds=30.0)
    mesh = Mesh(settings)
    await mesh.start()
    return mesh, name


def start_server(home: Path, url: str, executable: Path = BIN) -> ServerProcess:
    env = base_env(home, SHIFTBOSS_DATABASE_URL=url, SHIFTBOSS_HEARTBEAT_SECONDS="30")
    return ServerProcess(home, env, executable=executable).start()


async def ended_runs(db: object, deployment: str) -> dict[str, int]:
    """How many runs of a deployment are in each final state, read from the database."""
    from sqlalchemy import text

    async with db.reading() as session:  # type: ignore[attr-defined]
        rows = await session.execute(
            text("SELECT state, count(*) FROM flow_runs WHERE deployment = :d AND state IN "
                 "('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED') GROUP BY state"),
            {"d": deployment},
        )
        return {state: count for state, count in rows}


async def last_key(db: object) -> int:
    """The key of the newest run: runs made from now on have greater keys."""
    from sqlalchemy import text

    async with db.reading() as session:  # type: ignore[attr-defined]
        return (await session.execute(text("SELECT coalesce(max(seq), 0) FROM flow_runs"))).scalar_one()


async def wait_ended(db: object, deployment: str, after: int, deadline: float) -> None:
    """Wait until every run of the deployment with a key past `after` has ended, read from
    the database. Each look starts at the oldest run seen unended, so it reads only the runs
    that ended since the last: counting them all every 20 ms would cost the database more
    CPU than the runs it counts (20 ms a look at 10,000 runs on PostgreSQL), on a machine
    the server shares."""
    from sqlalchemy import text

    query = text(
        "SELECT seq FROM flow_runs WHERE seq > :after AND deployment = :d AND state NOT IN "
        "('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED') ORDER BY seq LIMIT 1"
    )
    while True:
        async with db.reading() as session:  # type: ignore[attr-defined]
            oldest = (await session.execute(query, {"after": after, "d": deployment})).scalar()
        if oldest is None:
            return
        after = oldest - 1
        assert time.monotonic() < deadline, f"runs of {deployment} ended by now: {await ended_runs(db, deployment)}"
        await asyncio.sleep(0.02)


async def throughput(client: AsyncClient, server: ServerProcess, url: str, home: Path, runs: int) -> dict[str, float]:
    """Bursts created in bulk, then bursts of `runs` created 32 at a time, each from the
    first create call until all are COMPLETED, served by real noop worker processes:
    runs/s, and server and worker CPU milliseconds per run."""
    from shiftboss.services.db import open_database, release_database

    env = base_env(home, SHIFTBOSS_API_ADDRESS=server.address)
    workers = [
        WorkerProcess(["-p", "bench", "-n", f"w{i}", "--type", "noop"], home, env, executable=server.executable)
        for i in range(WORKERS)
    ]
    db = open_database(url)
    try:
        for worker in workers:
            worker.wait_for_line("connected to")
        sem = asyncio.Semaphore(32)

        async def create() -> None:
            async with sem:
                await client.create_flow_run("burst")

        bulk_sem = asyncio.Semaphore(BULK_IN_FLIGHT)

        async def create_many(count: int) -> None:
            async with bulk_sem:
                reply = await client.create_flow_runs([{"deployment": "bulk"}] * count)
                assert len(reply.ids) == count

        assert server.proc is not None
        pids = [w.proc.pid for w in workers]

        async def bursts(deployment: str, size: int, make: Any) -> dict[str, float]:
            rates, server_cpu, worker_cpu = [], [], []
            for burst in range(1, BURSTS + 1):
                after = await last_key(db)
                cpu, cpu_workers = cpu_seconds(server.proc.pid), sum(map(cpu_seconds, pids))
                started = time.perf_counter()
                await make()
                await wait_ended(db, deployment, after, time.monotonic() + 300)
                rates.append(size / (time.perf_counter() - started))
                server_cpu.append((cpu_seconds(server.proc.pid) - cpu) * 1000 / size)
                worker_cpu.append((sum(map(cpu_seconds, pids)) - cpu_workers) * 1000 / size)
            return {
                "runs_per_second": statistics.median(rates),
                "runs_per_second_min": min(rates),
                "runs_per_second_max": max(rates),
                "server_cpu_ms_per_run": statistics.median(server_cpu),
                "worker_cpu_ms_per_run": statistics.median(worker_cpu),
            }

        async def bulk() -> None:
            sizes = [BULK_BATCH] * (BULK_RUNS // BULK_BATCH)
            await asyncio.gather(*(create_many(size) for size in sizes))

        async def one_by_one() -> None:
            await asyncio.gather(*(create() for _ in range(runs)))

        bulk_figures = await bursts("bulk", BULK_RUNS, bulk)
        single = await bursts("burst", runs, one_by_one)
        # The stream alone: runs created while the pool is paused (the server's CPU for
        # creating them measured apart), then resumed and served to COMPLETED.
        await client.pause_work_pool("bench")
        after = await last_key(db)
        cpu = cpu_seconds(server.proc.pid)
        await asyncio.gather(*(create() for _ in range(runs)))
        create_cpu = (cpu_seconds(server.proc.pid) - cpu) * 1000 / runs
        cpu, cpu_workers = cpu_seconds(server.proc.pid), sum(map(cpu_seconds, pids))
        started = time.perf_counter()
        await client.resume_work_pool("bench")
        await wait_ended(db, "burst", after, time.monotonic() + 300)
        drained = runs / (time.perf_counter() - started)
        stream_cpu = (cpu_seconds(server.proc.pid) - cpu) * 1000 / runs
        stream_worker_cpu = (sum(map(cpu_seconds, pids)) - cpu_workers) * 1000 / runs
        ended = await ended_runs(db, "burst")
        assert ended == {"COMPLETED": (BURSTS + 1) * runs}, f"runs that did not complete: {ended}"
        bulk_ended = await ended_runs(db, "bulk")
        assert bulk_ended == {"COMPLETED": BURSTS * BULK_RUNS}, f"bulk runs that did not complete: {bulk_ended}"
    finally:
        await release_database(db)
        for worker in workers:
            worker.stop()
    return {
        **{f"bulk_{k}": v for k, v in bulk_figures.items()},
        **single,
        "create_cpu_ms_per_run": create_cpu,
        "drain_runs_per_second": drained,
        "drain_server_cpu_ms_per_run": stream_cpu,
        "drain_worker_cpu_ms_per_run": stream_worker_cpu,
    }


async def queue_far_future_runs(url: str, count: int) -> None:
    """Put `count` runs due tomorrow straight into the scheduler's table while the server
    is stopped (the API would take minutes); the restarted server then loads them into the
    core like any restart would.

    On PostgreSQL the table is then analyzed, as autovacuum does within a minute of such
    growth: a table never analyzed since it went from empty to 10,000 rows gets plans made
    for an empty one (the lease's UPDATE scanned every waiting run), which no running
    system keeps."""
    from sqlalchemy import insert, text

    from shiftboss.services.db import open_database, release_database
    from shiftboss.services.scheduler.models import FlowRunRow, new_id, now_utc

    db = open_database(url)
    try:
        start = now_utc() + timedelta(days=1)
        rows = [
            dict(id=new_id(), name="queued", deployment="noop", pool="bench", queue="later", entrypoint="flows/noop.py:noop",
                 parameters={}, job_variables={}, job_configuration={}, scheduled_start=start, state="SCHEDULED",
                 message="", worker="", lease=0, created=now_utc())
            for _ in range(count)
        ]
        async with db.transaction() as session:
            await session.execute(insert(FlowRunRow), rows)
        if not db.is_sqlite:
            async with db.transaction() as session:
                await session.execute(text("ANALYZE flow_runs"))
    finally:
        await release_database(db)


async def scenario(backend: str, tmp: Path, runs: int, queued: int, executable: Path = BIN) -> dict[str, float]:
    tmp.mkdir(parents=True, exist_ok=True)  # the workers' working directory too
    url, database = await database_for(backend, tmp)
    server = start_server(tmp, url, executable)
    try:
        async with AsyncClient(server.address, timeout=60) as client:
            await client.create_work_pool("bench", "noop")
            await client.create_work_queue("later", "bench", priority=2)
            await client.create_deployment("noop", "bench", "flows/noop.py:noop")
            await client.create_deployment("burst", "bench", "flows/noop.py:noop")
            await client.create_deployment("bulk", "bench", "flows/noop.py:noop")
        if queued:
            server.stop()
            await queue_far_future_runs(url, queued)
            server = start_server(tmp, url, executable)
        async with AsyncClient(server.address, timeout=60) as client:
            worker = NoopWorker(client, "latency", "bench")
            await worker.start()
            latencies = []
            for _ in range(runs):
                # From the user's call: admission starts before CreateFlowRun answers, so a
                # clock started at the answer would leave part of the wait out.
                called = time.perf_counter()
                run = await client.create_flow_run("noop")
                while run.id not in worker.received:  # the worker stamps its arrival; no spinning here
                    worker.dispatched.clear()
                    await worker.dispatched.wait()
                latencies.append((worker.received[run.id] - called) * 1000)
            assert min(latencies) > 0, "a run reached the worker before it was asked for"
            await worker.stop()

            loaded = os.getloadavg()[0]
            measured = await throughput(client, server, url, tmp, runs)
        latencies.sort()
        return {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "load_before": loaded,
            **measured,
        }
    finally:
        server.stop()
        if database:
            await drop_postgres_database(database)


@pytest.mark.timeout(1800)  # up to three servers, each with 10,000 runs through it
@pytest.mark.parametrize("backend", BACKENDS)
def test_dispatch_latency_and_throughput(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = asyncio.run(scenario(backend, tmp_path / "before", RUNS, 0, Path(BASELINE))) if BASELINE else None
    empty = asyncio.run(scenario(backend, tmp_path / "empty", RUNS, 0))
    loaded = benchmark.pedantic(lambda: asyncio.run(scenario(backend, tmp_path / "loaded", RUNS, QUEUED)), rounds=1, iterations=1)
    line = (
        f"{backend}: created->dispatched p50 {empty['p50_ms']:.2f} ms p99 {empty['p99_ms']:.2f} ms ({RUNS:,} runs one at a time); "
        f"created->COMPLETED with {WORKERS} noop worker processes, load {empty['load_before']:.1f}: "
        f"in bulk ({BULK_RUNS:,} runs, {BULK_BATCH} a call, {BULK_IN_FLIGHT} calls in flight) "
        f"{empty['bulk_runs_per_second']:.0f} runs/s ({empty['bulk_runs_per_second_min']:.0f}-"
        f"{empty['bulk_runs_per_second_max']:.0f}), server CPU {empty['bulk_server_cpu_ms_per_run']:.2f} ms/run, "
        f"workers {empty['bulk_worker_cpu_ms_per_run']:.2f} ms/run; one call a run ({RUNS:,} runs, 32 in flight) "
        f"{empty['runs_per_second']:.0f} runs/s ({empty['runs_per_second_min']:.0f}-{empty['runs_per_second_max']:.0f}), "
        f"server CPU {empty['server_cpu_ms_per_run']:.2f} ms/run ({empty['create_cpu_ms_per_run']:.2f} of them creating it), "
        f"workers {empty['worker_cpu_ms_per_run']:.2f} ms/run; queued -> COMPLETED "
        f"{empty['drain_runs_per_second']:.0f} runs/s, server CPU {empty['drain_server_cpu_ms_per_run']:.2f} ms/run | with {QUEUED:,} queued: "
        f"p50 {loaded['p50_ms']:.2f} ms p99 {loaded['p99_ms']:.2f} ms, bulk {loaded['bulk_runs_per_second']:.0f} runs/s, "
        f"one call a run {loaded['runs_per_second']:.0f} runs/s (x{empty['runs_per_second'] / loaded['runs_per_second']:.2f} slower)"
    )
    figures = {**{f"empty_{k}": v for k, v in empty.items()}, **{f"loaded_{k}": v for k, v in loaded.items()}}
    if before is not None:
        ratios = []
        for label, key in (("bulk", "bulk_"), ("one call a run", ""), ("queued -> COMPLETED", "drain_")):
            ratios.append(
                f"{label} {before[f'{key}runs_per_second']:.0f} runs/s, server CPU {before[f'{key}server_cpu_ms_per_run']:.2f} ms/run: "
                f"x{empty[f'{key}runs_per_second'] / before[f'{key}runs_per_second']:.2f} runs/s, "
                f"x{before[f'{key}server_cpu_ms_per_run'] / empty[f'{key}server_cpu_ms_per_run']:.2f} less server CPU"
            )
        line += f" | vs {BASELINE} (load {before['load_before']:.1f}): " + "; ".join(ratios)
        figures.update({f"before_{k}": v for k, v in before.items()})
    report(line, **figures)
