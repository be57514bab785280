"""Rendering the kubernetes default with deployment and run overrides: compiled and cached vs naive."""

from __future__ import annotations

import time

from shiftboss.services.templates.builtin import default_template
from shiftboss.services.templates.compiler import compile_template, naive_render

DEPLOYMENT = {"image": "registry.example/etl:1.4", "namespace": "data", "env": {"LOG_LEVEL": "info", "REGION": "eu"}}
RUN = {"env": {"LOG_LEVEL": "debug"}, "cpu_request": "500m", "memory_request": "1Gi"}


def rate(render, seconds: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        render()
        count += 1
    return count / (time.perf_counter() - start)


def test_cached_render_vs_naive(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    template = default_template("kubernetes")
    assert compile_template(template).render(DEPLOYMENT, RUN) == naive_render(template, DEPLOYMENT, RUN)
    naive = rate(lambda: naive_render(template, DEPLOYMENT, RUN))
    cached = benchmark.pedantic(rate, args=(lambda: compile_template(template).render(DEPLOYMENT, RUN),), rounds=3, iterations=1)
    report(
        f"kubernetes render: cached {cached:,.0f}/s, naive {naive:,.0f}/s, ratio {cached / naive:.1f}x",
        cached_per_second=cached,
        naive_per_second=naive,
        ratio=cached / naive,
    )
