"""Load for bench/test_telemetry_bench.py, in a process of its own so that the bench
measures the server's CPU alone: four no-op stream workers, and an SDK client that
creates runs 32 at a time once told to go.

    python -m bench._load ADDRESS RUNS RATIO   (RATIO: off, or the ratio the client samples at, as an application would)

Runs a warm-up burst of WARM runs and prints `ready`, reads a line, then creates RUNS runs
and prints `done SECONDS` when the scheduler has recorded every one COMPLETED.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.test_dispatch_bench import NoopWorker, Tally
from shiftboss import telemetry
from shiftboss.client import AsyncClient

WORKERS = 4
CONCURRENCY = 32
WARM = 4 * CONCURRENCY


async def load(address: str, runs: int) -> None:
    async with AsyncClient(address, timeout=60) as client:
        tally = Tally()
        workers = [NoopWorker(client, f"w{i}", "bench", tally) for i in range(WORKERS)]
        for worker in workers:
            await worker.start()
        sem = asyncio.Semaphore(CONCURRENCY)

        async def create() -> None:
            async with sem:
                await client.create_flow_run("burst")

        # Warm: a burst as wide as the measured one, so that lazy setup (the server's
        # database connections as many as a burst holds, their prepared statements) is paid
        # before, as on a server that has been running.
        await asyncio.gather(*(create() for _ in range(WARM)))
        await tally.wait_for(WARM)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(runs)))
        await tally.wait_for(runs + WARM)
        print(f"done {time.perf_counter() - started}", flush=True)
        for worker in workers:
            await worker.stop()


def main() -> None:
    address, runs, ratio = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    installed = None
    if ratio != "off":
        from bench.test_telemetry_bench import traced_client

        installed = traced_client(float(ratio))
    with telemetry.use(installed):
        asyncio.run(load(address, runs))
    if installed is not None:
        installed.shutdown()


if __name__ == "__main__":
    main()
