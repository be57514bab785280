"""Rendering the kubernetes default with deployment and run overrides: the compiled
template kept by TemplateService against a renderer without a cache (walk, check the
values, substitute: the fair baseline) and against one that also checks the template's
schema each time; then the scheduler's own cache of renderings, hit, on its own."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from shiftboss.services.scheduler.rendering import RenderCache
from shiftboss.services.templates.builtin import default_template
from shiftboss.services.templates.compiler import compile_template, naive_render, plain_render

DEPLOYMENT = {"image": "registry.example/etl:1.4", "namespace": "data", "env": {"LOG_LEVEL": "info", "REGION": "eu"}}
RUN = {"env": {"LOG_LEVEL": "debug"}, "cpu_request": "500m", "memory_request": "1Gi"}


def rate(render, seconds: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        render()
        count += 1
    return count / (time.perf_counter() - start)


def test_cached_render_vs_uncached(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    template = default_template("kubernetes")
    expected = compile_template(template).render(DEPLOYMENT, RUN)
    assert plain_render(template, DEPLOYMENT, RUN) == expected == naive_render(template, DEPLOYMENT, RUN)
    plain = rate(lambda: plain_render(template, DEPLOYMENT, RUN))
    naive = rate(lambda: naive_render(template, DEPLOYMENT, RUN))
    cached = benchmark.pedantic(rate, args=(lambda: compile_template(template).render(DEPLOYMENT, RUN),), rounds=3, iterations=1)
    report(
        f"kubernetes render: compiled and kept {cached:,.0f}/s; without a cache {plain:,.0f}/s ({cached / plain:.1f}x), "
        f"also checking the template's schema {naive:,.0f}/s ({cached / naive:.1f}x)",
        cached_per_second=cached,
        plain_per_second=plain,
        naive_per_second=naive,
        ratio_vs_plain=cached / plain,
        ratio_vs_naive=cached / naive,
    )


def test_scheduler_render_cache_hit(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    """A run of a deployment rendered before costs the scheduler one key and one lookup."""
    template = default_template("kubernetes")
    runtime = SimpleNamespace(template=template)
    engine = SimpleNamespace(dispatcher=SimpleNamespace(pools={"k8s": runtime}), observer=None)
    cache = RenderCache(engine)  # type: ignore[arg-type]

    async def ask(request, deployment_variables, run_variables):  # type: ignore[no-untyped-def]  # TemplateService's answer
        from shiftboss.services.scheduler.rendering import Rendering

        return Rendering(compile_template(template).render(deployment_variables, run_variables), [], frozenset())

    cache._ask = ask  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cache.render("k8s", DEPLOYMENT, RUN))  # the miss, once

        def hits(count: int = 20_000) -> float:
            async def many() -> None:
                for _ in range(count):
                    await cache.render("k8s", DEPLOYMENT, RUN)

            start = time.perf_counter()
            loop.run_until_complete(many())
            return count / (time.perf_counter() - start)

        per_second = benchmark.pedantic(hits, rounds=3, iterations=1)
    finally:
        loop.close()
    report(f"scheduler render cache, hit: {per_second:,.0f}/s ({1e6 / per_second:.1f} us a run)", hits_per_second=per_second)
