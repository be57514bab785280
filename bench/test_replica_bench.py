"""Two scheduler replicas on one PostgreSQL: dispatch through the pool's owner vs through
the other replica.

Two `shiftboss server start` processes on a fresh database; four no-op workers on the
pool's owner (where a worker stream is redirected). Latency is one run at a time from the
user's CreateFlowRun call to the worker holding its Dispatch; throughput is runs created
32 at a time until each is COMPLETED (as in test_dispatch_bench.py). Through the owner, a
new run goes from the insert into the core in the same process; through the other, the
insert commits there and the owner's core learns of it from a PostgreSQL notice.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import asyncpg

from shiftboss.client import AsyncClient
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_url
from tests.e2e.conftest import ServerProcess, base_env
from test_dispatch_bench import NoopWorker, Tally  # type: ignore[import-not-found]

RUNS = 1_000
BURSTS = 3


async def owner_address(url: str, pool: str) -> str:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for _ in range(200):
            address = await connection.fetchval(
                "SELECT r.address FROM pool_owners o JOIN scheduler_replicas r ON r.id = o.replica WHERE o.pool = $1", pool
            )
            if address:
                return address
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError("no replica took the pool")


async def measure(through: AsyncClient, at_owner: AsyncClient, worker: NoopWorker, tally: Tally, done: int) -> tuple[dict[str, float], int]:
    """Latency with one worker, then throughput with four more; the runs completed so far."""
    latencies = []
    for _ in range(RUNS):
        called = time.perf_counter()
        run = await through.create_flow_run("noop")
        while run.id not in worker.received:
            worker.dispatched.clear()
            await worker.dispatched.wait()
        latencies.append((worker.received[run.id] - called) * 1000)
    done += RUNS
    await tally.wait_for(done)
    workers = [NoopWorker(at_owner, f"w{i}", "bench", tally) for i in range(4)]
    for w in workers:
        await w.start()
    sem = asyncio.Semaphore(32)

    async def create() -> None:
        async with sem:
            await through.create_flow_run("burst")

    rates = []
    for _ in range(BURSTS):
        started = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(RUNS)))
        done += RUNS
        await tally.wait_for(done)
        rates.append(RUNS / (time.perf_counter() - started))
    for w in workers:
        await w.stop()
    latencies.sort()
    figures = {"p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1], "runs_per_second": statistics.median(rates)}
    return figures, done


async def scenario(tmp: Path) -> dict[str, dict[str, float]]:
    name = await create_postgres_database()
    url = postgres_url(name)
    env = base_env(tmp, SHIFTBOSS_DATABASE_URL=url, SHIFTBOSS_HEARTBEAT_SECONDS="30")
    servers = [ServerProcess(tmp, env).start(), ServerProcess(tmp, env).start()]
    try:
        async with AsyncClient(servers[0].address, timeout=60) as client:
            await client.create_work_pool("bench", "process")
            await client.create_deployment("noop", "bench", "flows/noop.py:noop")
            await client.create_deployment("burst", "bench", "flows/noop.py:noop")
        owner = await owner_address(url, "bench")
        other = next(s.address for s in servers if s.address != owner)
        async with AsyncClient(owner, timeout=60) as at_owner, AsyncClient(other, timeout=60) as at_other:
            tally = Tally()
            latency_worker = NoopWorker(at_owner, "latency", "bench", tally)
            await latency_worker.start()
            figures: dict[str, dict[str, float]] = {}
            figures["owner"], done = await measure(at_owner, at_owner, latency_worker, tally, 0)
            figures["other"], done = await measure(at_other, at_owner, latency_worker, tally, done)
            await latency_worker.stop()
        return figures
    finally:
        for server in servers:
            server.stop()
        await drop_postgres_database(name)


def test_dispatch_through_the_owner_and_through_another_replica(benchmark, report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    figures = benchmark.pedantic(lambda: asyncio.run(scenario(tmp_path)), rounds=1, iterations=1)
    owner, other = figures["owner"], figures["other"]
    report(
        f"2 replicas on postgres, {RUNS:,} runs: through the owner created->dispatched p50 {owner['p50_ms']:.2f} ms "
        f"p99 {owner['p99_ms']:.2f} ms, {owner['runs_per_second']:.0f} runs/s | through the other replica p50 "
        f"{other['p50_ms']:.2f} ms p99 {other['p99_ms']:.2f} ms, {other['runs_per_second']:.0f} runs/s",
        **{f"owner_{k}": v for k, v in owner.items()},
        **{f"other_{k}": v for k, v in other.items()},
    )
