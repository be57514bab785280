"""The docker backend beside the process backend, for a flow that prints one line and returns:

- created -> the run's first log line, as a user watching it sees it (run_deployment
  returning -> the line arriving on WatchFlowRun), one run at a time;
- runs per second for a burst of runs with one worker at --limit 4.

Same server, same flow, the two workers side by side; the docker runs use the test image
(tests/docker_image.py) with no network and auto_remove. Skipped where no Docker daemon answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import textwrap
import time
from pathlib import Path

from bench.test_worker_bench import percentile
from shiftboss.client import AsyncClient
from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env
from tests.e2e.docker_daemon import docker_client, image, mount  # noqa: F401
from tests.waiting import async_wait_state

FLOW = textwrap.dedent(
    """
    def hello():
        print("first", flush=True)
    """
)
LATENCY_RUNS = 30
BURST_RUNS = 40


async def first_line_latency(client: AsyncClient, deployment: str, runs: int) -> list[float]:
    latencies = []
    for _ in range(runs):
        run = await client.run_deployment(deployment)
        created = time.perf_counter()
        async with contextlib.aclosing(client.watch_flow_run(run.id, logs=True, timeout=60)) as events:
            async for event in events:
                if event.kind == "log":
                    latencies.append((time.perf_counter() - created) * 1000)
                    break
    return latencies


async def burst(client: AsyncClient, deployment: str, runs: int) -> float:
    started = time.perf_counter()
    created = await asyncio.gather(*(client.run_deployment(deployment) for _ in range(runs)))
    for run in created:
        await async_wait_state(client, run.id, "COMPLETED", "FAILED", "CRASHED", timeout=300)
    elapsed = time.perf_counter() - started
    done = await asyncio.gather(*(client.get_flow_run(run.id) for run in created))
    assert all(r.exit_code == 0 for r in done), "some runs did not complete"
    return runs / elapsed


def test_docker_beside_process(benchmark, report, tmp_path: Path, image: str) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "bench.py").write_text(FLOW)
    server = ServerProcess(home, base_env(home)).start()
    workers: list[WorkerProcess] = []
    figures: dict[str, tuple[float, float, float]] = {}
    try:
        env = base_env(home, SHIFTBOSS_API_ADDRESS=server.address)
        container = {"image": image, "image_pull_policy": "Never", "network_mode": "none", "auto_remove": True, "volumes": [mount(project / "flows")]}

        async def setup() -> None:
            async with AsyncClient(server.address, timeout=60) as client:
                for kind in ("process", "docker"):
                    await client.create_work_pool(kind, kind)
                    await client.create_deployment(f"hello-{kind}", kind, "flows/bench.py:hello", job_variables=container if kind == "docker" else None)

        async def measure(kind: str) -> tuple[float, float, float]:
            async with AsyncClient(server.address, timeout=60) as client:
                latencies = await first_line_latency(client, f"hello-{kind}", LATENCY_RUNS)
                rate = await burst(client, f"hello-{kind}", BURST_RUNS)
            return statistics.median(latencies), percentile(latencies, 0.99), rate

        asyncio.run(setup())
        for kind in ("process", "docker"):
            workers.append(WorkerProcess(["-p", kind, "--type", kind, "-l", "4", "-n", kind], project, env))
            workers[-1].wait_for_line("connected to")
            if kind == "docker":
                figures[kind] = benchmark.pedantic(lambda: asyncio.run(measure(kind)), rounds=1, iterations=1)
            else:
                figures[kind] = asyncio.run(measure(kind))
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
    (pp50, pp99, prate), (dp50, dp99, drate) = figures["process"], figures["docker"]
    report(
        f"created -> first log line, no-op flow, one at a time ({LATENCY_RUNS} runs): process p50 {pp50:.0f} ms p99 {pp99:.0f} ms, "
        f"docker p50 {dp50:.0f} ms p99 {dp99:.0f} ms; {BURST_RUNS} runs at once, one worker -l 4: process {prate:.1f} runs/s, "
        f"docker {drate:.2f} runs/s (vfs storage: each container copies the image)",
        process_first_line_p50_ms=pp50,
        process_first_line_p99_ms=pp99,
        docker_first_line_p50_ms=dp50,
        docker_first_line_p99_ms=dp99,
        process_runs_per_second=prate,
        docker_runs_per_second=drate,
    )
