"""Creating runs in bulk against one call per run, side by side in one run, SQLite and PostgreSQL.

The server is `shiftboss server start` in its own process; this process is the user: the
SDK's `create_flow_runs` with 10,000 runs a call, then `create_flow_run` with 64 calls in
flight. Each figure is from the first call to the last answer, through the SDK (requests
built, keys made, replies read), the median of a few rounds. No worker is connected: the
runs are committed and waiting in the core, which is what a create promises.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest

from shiftboss.client import AsyncClient
from tests.conftest import drop_postgres_database
from test_dispatch_bench import database_for, start_server  # type: ignore[import-not-found]

BACKENDS = ["sqlite", "postgres"]
#: Runs a bulk call makes (the most one call takes), and bulk calls a round.
BATCH, CALLS = 10_000, 2
#: Runs made one call each in a round, and how many calls are in flight.
SINGLE, IN_FLIGHT = 4_000, 64
ROUNDS = 3


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user and system), from /proc: the server's cost, which
    the machine's load does not stretch as it stretches wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bulk_round(client: AsyncClient, pid: int) -> tuple[float, float]:
    """Runs a second, and the server's CPU microseconds a run."""
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    for _ in range(CALLS):
        reply = await client.create_flow_runs([{"deployment": "bulk"}] * BATCH)
        assert len(reply.ids) == reply.created == BATCH
    runs = CALLS * BATCH
    return runs / (time.perf_counter() - started), (cpu_seconds(pid) - cpu) / runs * 1e6


async def single_round(client: AsyncClient, pid: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def create() -> None:
        async with gate:
            await client.create_flow_run("single")

    started, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(create() for _ in range(SINGLE)))
    return SINGLE / (time.perf_counter() - started), (cpu_seconds(pid) - cpu) / SINGLE * 1e6


async def scenario(backend: str, tmp: Path) -> dict[str, float]:
    url, database = await database_for(backend, tmp)
    server = start_server(tmp, url)
    try:
        async with AsyncClient(server.address, timeout=120) as client:
            await client.create_work_pool("bench", "process")
            await client.create_deployment("bulk", "bench", "flows/noop.py:noop")
            await client.create_deployment("single", "bench", "flows/noop.py:noop")
            await client.create_flow_runs([{"deployment": "bulk"}] * 100)  # warm: deployments read, rendering kept
            await client.create_flow_run("single")
            assert server.proc is not None
            bulk, single = [], []
            for _ in range(ROUNDS):  # interleaved, so a busy moment of the machine falls on both
                bulk.append(await bulk_round(client, server.proc.pid))
                single.append(await single_round(client, server.proc.pid))
            listed = await client.list_flow_runs(deployment="bulk", limit=1)
            assert listed.flow_runs, "the bulk runs are not in the database"
    finally:
        server.stop()
        if database:
            await drop_postgres_database(database)
    rates = {"batched": [r for r, _ in bulk], "single": [r for r, _ in single]}
    costs = {"batched": [c for _, c in bulk], "single": [c for _, c in single]}
    return {
        **{f"{k}_runs_per_second": statistics.median(v) for k, v in rates.items()},
        **{f"{k}_runs_per_second_min": min(v) for k, v in rates.items()},
        **{f"{k}_server_cpu_us_per_run": statistics.median(v) for k, v in costs.items()},
        "ratio": statistics.median(rates["batched"]) / statistics.median(rates["single"]),
    }


def test_bulk_create_against_one_call_per_run(benchmark, report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    figures: dict[str, dict[str, float]] = {}

    def run_all() -> None:
        for backend in BACKENDS:
            figures[backend] = asyncio.run(scenario(backend, tmp_path / backend))

    benchmark.pedantic(run_all, rounds=1, iterations=1)
    load = os.getloadavg()[0]
    parts = [
        f"{backend}: batched ({BATCH:,} a call) {f['batched_runs_per_second']:,.0f} runs/s, "
        f"one call per run ({IN_FLIGHT} in flight) {f['single_runs_per_second']:,.0f} runs/s, x{f['ratio']:.1f}; "
        f"server CPU {f['batched_server_cpu_us_per_run']:.0f} vs {f['single_server_cpu_us_per_run']:.0f} us a run"
        for backend, f in figures.items()
    ]
    report(
        "created through the SDK, median of 3 rounds | " + " | ".join(parts) + f" | load {load:.1f}",
        load=load,
        **{f"{backend}_{k}": v for backend, f in figures.items() for k, v in f.items()},
    )
    pg = figures["postgres"]
    assert pg["batched_runs_per_second"] > pg["single_runs_per_second"], "a bulk call is slower than one call per run"
