"""Push dispatch end to end through the real mesh: latency and throughput, SQLite and PostgreSQL.

Workers are no-op stream clients that acknowledge, start and finish each run at once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import load_settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_url

BACKENDS = ["sqlite", "postgres"]


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
            self.stream.ack(dispatch)
            self.stream.started(dispatch.run, dispatch.lease)
            self.stream.finished(dispatch.run, dispatch.lease, "COMPLETED", exit_code=0)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.stream.close()


async def mesh_on(backend: str, tmp: Path) -> tuple[Mesh, str | None]:
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    else:
        name = await create_postgres_database()
        url = postgres_url(name)
    settings = load_settings(environ={"SHIFTBOSS_HOME": str(tmp)}, database_url=url, port=0, heartbeat_seconds=30.0)
    mesh = Mesh(settings)
    await mesh.start()
    return mesh, name


async def queue_far_future_runs(mesh: Mesh, count: int) -> None:
    """Put `count` runs due tomorrow straight into the scheduler's table (the API would take
    minutes); the restarted mesh then loads them into the core like any restart would."""
    from sqlalchemy import insert

    from shiftboss.services.db import open_database, release_database
    from shiftboss.services.scheduler.models import FlowRunRow, new_id, now_utc

    db = open_database(mesh.settings.database_url_for("scheduler"))
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
    finally:
        await release_database(db)


async def scenario(backend: str, tmp: Path, runs: int, queued: int) -> dict[str, float]:
    mesh, database = await mesh_on(backend, tmp)
    try:
        async with AsyncClient(f"127.0.0.1:{mesh.port}", timeout=60) as client:
            await client.create_work_pool("bench", "process")
            await client.create_work_queue("later", "bench", priority=2)
            await client.create_deployment("noop", "bench", "flows/noop.py:noop")
            await client.create_deployment("burst", "bench", "flows/noop.py:noop")
        if queued:
            await queue_far_future_runs(mesh, queued)
            await mesh.stop(0)
            mesh = Mesh(mesh.settings)
            await mesh.start()
        async with AsyncClient(f"127.0.0.1:{mesh.port}", timeout=60) as client:
            worker = NoopWorker(client, "latency", "bench")
            await worker.start()
            latencies = []
            for _ in range(runs):
                run = await client.create_flow_run("noop")
                returned = time.perf_counter()
                while run.id not in worker.received:
                    await asyncio.sleep(0)
                latencies.append((worker.received[run.id] - returned) * 1000)
            await worker.stop()

            tally = Tally()
            workers = [NoopWorker(client, f"w{i}", "bench", tally) for i in range(4)]
            for w in workers:
                await w.start()
            started = time.perf_counter()
            sem = asyncio.Semaphore(32)

            async def create() -> None:
                async with sem:
                    await client.create_flow_run("burst")

            await asyncio.gather(*(create() for _ in range(runs)))
            await tally.wait_for(runs)
            throughput = runs / (time.perf_counter() - started)
            for w in workers:
                await w.stop()
        latencies.sort()
        return {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "runs_per_second": throughput,
        }
    finally:
        await mesh.stop(0)
        if database:
            await drop_postgres_database(database)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dispatch_latency_and_throughput(benchmark, report, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = 300
    empty = asyncio.run(scenario(backend, tmp_path / "empty", runs, 0))
    loaded = benchmark.pedantic(lambda: asyncio.run(scenario(backend, tmp_path / "loaded", runs, 10_000)), rounds=1, iterations=1)
    report(
        f"{backend}: created->dispatched p50 {empty['p50_ms']:.2f} ms p99 {empty['p99_ms']:.2f} ms; "
        f"created->COMPLETED {empty['runs_per_second']:.0f} runs/s with 4 workers | with 10,000 queued: "
        f"p50 {loaded['p50_ms']:.2f} ms p99 {loaded['p99_ms']:.2f} ms, {loaded['runs_per_second']:.0f} runs/s",
        **{f"empty_{k}": v for k, v in empty.items()},
        **{f"loaded_{k}": v for k, v in loaded.items()},
    )
