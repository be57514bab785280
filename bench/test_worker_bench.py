"""Workers as users run them: a real server process and real `shiftboss worker start` processes.

- deployment run returning -> the flow's first line executing, with the process backend,
  one run at a time (the seeds' product: created -> RUNNING p50 10,351 ms at its default
  poll, 4,367 ms with a 1 s poll, per BASELINE.md);
- 100 runs created at once -> COMPLETED with one process worker at --limit 8 (the seeds'
  product: 0.32 runs/s);
- 1,000 runs created at once -> COMPLETED with 4 noop workers.
"""

from __future__ import annotations

import asyncio
import statistics
import textwrap
import time
from pathlib import Path

from shiftboss.client import AsyncClient
from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env

PREFECT_RUNNING_P50_MS = 10_351.0
PREFECT_RUNNING_P50_FAST_POLL_MS = 4_367.0
PREFECT_100_RUNS_PER_S = 0.32

FLOW = textwrap.dedent(
    """
    import time
    def stamp(out: str = ""):
        if out:
            with open(out, "w") as fh:
                fh.write(repr(time.time()))
    """
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def wait_done(client: AsyncClient, deployment: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = await client.list_flow_runs(deployment=deployment, states=["COMPLETED", "FAILED", "CRASHED"], limit=count)
        if len(listed.flow_runs) >= count:
            return
        assert time.monotonic() < deadline, f"{len(listed.flow_runs)} of {count} runs ended"
        await asyncio.sleep(0.05)


async def flow_start_latency(address: str, project: Path, runs: int, deployment: str = "stamp") -> list[float]:
    latencies = []
    async with AsyncClient(address, timeout=30) as client:
        for i in range(runs):
            out = project / f"{deployment}-{i}"
            await client.run_deployment(deployment, parameters={"out": str(out)})
            returned = time.time()
            while not out.exists() or not out.read_text():
                await asyncio.sleep(0.001)
            latencies.append((float(out.read_text()) - returned) * 1000)
    return latencies


async def burst(address: str, deployment: str, runs: int) -> float:
    async with AsyncClient(address, timeout=60) as client:
        started = time.perf_counter()
        sem = asyncio.Semaphore(32)

        async def create() -> None:
            async with sem:
                await client.run_deployment(deployment)

        await asyncio.gather(*(create() for _ in range(runs)))
        await wait_done(client, deployment, runs)
        listed = await client.list_flow_runs(deployment=deployment, states=["COMPLETED"], limit=runs)
        assert len(listed.flow_runs) == runs, "some runs did not complete"
        return runs / (time.perf_counter() - started)


def test_workers_end_to_end(benchmark, report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "bench.py").write_text(FLOW)
    server = ServerProcess(home, base_env(home)).start()
    workers: list[WorkerProcess] = []
    try:
        env = base_env(home, SHIFTBOSS_API_ADDRESS=server.address)

        async def setup() -> None:
            async with AsyncClient(server.address, timeout=30) as client:
                await client.create_work_pool("proc", "process")
                await client.create_work_pool("coldproc", "process")
                await client.create_deployment("cold-stamp", "coldproc", "flows/bench.py:stamp")
                await client.create_deployment("cold-hundred", "coldproc", "flows/bench.py:stamp")
                await client.create_work_pool("fast", "noop")
                await client.create_deployment("stamp", "proc", "flows/bench.py:stamp")
                await client.create_deployment("hundred", "proc", "flows/bench.py:stamp")
                await client.create_deployment("thousand", "fast", "flows/bench.py:stamp")

        asyncio.run(setup())
        # Warm starts (the default: runs forked from a fork server) and cold ones, side by side.
        workers.append(WorkerProcess(["-p", "proc", "-n", "proc-1", "-l", "8"], project, env))
        workers[0].wait_for_line("connected to")
        workers.append(WorkerProcess(["-p", "coldproc", "-n", "cold-1", "-l", "8", "--no-preload"], project, env))
        workers[1].wait_for_line("connected to")
        latencies = asyncio.run(flow_start_latency(server.address, project, 200))
        cold_latencies = asyncio.run(flow_start_latency(server.address, project, 100, "cold-stamp"))
        hundred = asyncio.run(burst(server.address, "hundred", 100))
        cold_hundred = asyncio.run(burst(server.address, "cold-hundred", 100))
        for i in range(4):
            workers.append(WorkerProcess(["-p", "fast", "-n", f"noop-{i}"], project, env))
            workers[-1].wait_for_line("connected to")
        thousand = benchmark.pedantic(lambda: asyncio.run(burst(server.address, "thousand", 1000)), rounds=1, iterations=1)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    cold_p50, cold_p99 = statistics.median(cold_latencies), percentile(cold_latencies, 0.99)
    report(
        f"deployment run -> flow's first line (process, warm): p50 {p50:.0f} ms p99 {p99:.0f} ms over 200 runs; "
        f"cold (--no-preload) p50 {cold_p50:.0f} ms p99 {cold_p99:.0f} ms, 100 runs at once {cold_hundred:.1f} runs/s "
        f"({PREFECT_RUNNING_P50_MS / p50:.0f}x faster than the baseline's created->RUNNING p50 at its default poll, "
        f"{PREFECT_RUNNING_P50_FAST_POLL_MS / p50:.0f}x at a 1 s poll); 100 runs at once -> COMPLETED with one process "
        f"worker -l 8: {hundred:.1f} runs/s ({hundred / PREFECT_100_RUNS_PER_S:.0f}x the baseline); 1,000 runs with 4 noop "
        f"workers: {thousand:.0f} runs/s",
        first_line_p50_ms=p50,
        first_line_p99_ms=p99,
        cold_first_line_p50_ms=cold_p50,
        cold_first_line_p99_ms=cold_p99,
        cold_process_runs_per_second=cold_hundred,
        process_runs_per_second=hundred,
        noop_runs_per_second=thousand,
    )
