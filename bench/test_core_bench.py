"""The scheduling core: admissions per second, cost growth with queue size, memory per run."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import tracemalloc

from shiftboss.core import ReferencePoolState, compiled_pool_state

CompiledPoolState = compiled_pool_state()
QUEUES = 100


def filled(cls: type, runs: int, queues: int = QUEUES) -> tuple[object, int]:
    pool = cls()
    for priority in range(1, queues + 1):
        pool.add_queue(f"q{priority}", priority)
    rng = random.Random(7)
    for key in range(runs):
        pool.add_run(key, f"q{rng.randrange(queues) + 1}", float(rng.randrange(1000)))
    return pool, runs


def admission_rate(cls: type, runs: int, rounds: int) -> float:
    """Runs admitted per second by workers asking for 10 each; the pool is refilled to size."""
    pool, next_key = filled(cls, runs)
    rng = random.Random(11)
    spent = 0.0
    admitted = 0
    for _ in range(rounds):
        start = time.perf_counter()
        got = pool.admit(2000.0, 0.0, None, 10)
        spent += time.perf_counter() - start
        admitted += len(got)
        for key in got:
            pool.finish(key)
            pool.add_run(next_key, f"q{rng.randrange(QUEUES) + 1}", float(rng.randrange(1000)))
            next_key += 1
    return admitted / spent


def test_admissions_per_second_compiled_vs_reference(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    reference = admission_rate(ReferencePoolState, 100_000, 5_000)
    compiled = benchmark.pedantic(admission_rate, args=(CompiledPoolState, 100_000, 5_000), rounds=3, iterations=1)
    report(
        f"admission, 100 queues, 100,000 queued, 10 per worker: compiled {compiled:,.0f} runs/s, "
        f"reference {reference:,.0f} runs/s, ratio {compiled / reference:.1f}x",
        compiled_runs_per_second=compiled,
        reference_runs_per_second=reference,
        ratio=compiled / reference,
    )


def cycle_costs(cls: type, sizes: tuple[int, ...], cycles: int = 20_000, rounds: int = 5) -> list[float]:
    """CPU seconds per add + admit(1) + finish with each of `sizes` queued: the best of
    `rounds` rounds per size, the sizes taking turns. The machine is shared: a round that
    other processes slow down says nothing of the core, and taking turns lets every size
    meet the same quiet moments."""
    pools = [filled(cls, runs, queues=10) for runs in sizes]
    next_keys = [runs for _, runs in pools]
    best = [float("inf")] * len(sizes)
    for _ in range(rounds):
        for at, (pool, _) in enumerate(pools):
            next_key = next_keys[at]
            start = time.process_time()
            for i in range(cycles):
                pool.add_run(next_key, f"q{(i % 10) + 1}", 0.0)
                next_key += 1
                for key in pool.admit(2000.0, 0.0, None, 1):
                    pool.finish(key)
            best[at] = min(best[at], (time.process_time() - start) / cycles)
            next_keys[at] = next_key
    return best


def test_cycle_cost_grows_slowly(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    small, large = benchmark.pedantic(cycle_costs, args=(CompiledPoolState, (10_000, 1_000_000)), rounds=1, iterations=1)
    report(
        f"add+admit+finish: {small * 1e6:.2f} us at 10,000 queued, {large * 1e6:.2f} us at 1,000,000: ratio {large / small:.2f}",
        small_us=small * 1e6,
        large_us=large * 1e6,
        ratio=large / small,
    )


def production_rate(cls: type, serving: int, rounds: int = 20_000) -> float:
    """Admissions per second at the call shape of the scheduler: one free slot (`admit(...,
    worker.queues, 1)`), the worker naming `serving` of the pool's 100 queues, the
    run finished and another added after each, 100,000 queued."""
    pool, next_key = filled(cls, 100_000)
    queues = [f"q{i}" for i in range(1, QUEUES + 1, max(1, QUEUES // serving))][:serving]
    rng = random.Random(13)
    admitted = 0
    start = time.perf_counter()
    for _ in range(rounds):
        got = pool.admit(2000.0, 0.0, queues, 1)  # type: ignore[attr-defined]
        admitted += len(got)
        for key in got:
            pool.finish(key)  # type: ignore[attr-defined]
            pool.add_run(next_key, rng.choice(queues), float(rng.randrange(1000)))  # type: ignore[attr-defined]
            next_key += 1
    return admitted / (time.perf_counter() - start)


def test_admission_at_the_schedulers_call_shape(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    figures: dict[str, float] = {}
    parts = []
    for serving in (1, 10, 100):
        reference = production_rate(ReferencePoolState, serving, 5_000)
        compiled = production_rate(CompiledPoolState, serving) if serving != 100 else benchmark.pedantic(
            production_rate, args=(CompiledPoolState, serving), rounds=1, iterations=1
        )
        figures[f"ratio_{serving}_queues"] = compiled / reference
        figures[f"compiled_{serving}_queues_per_second"] = compiled
        parts.append(f"{serving} queue{'s' if serving > 1 else ''}: {compiled:,.0f}/s, {compiled / reference:.1f}x the reference")
    report("admit(now, prefetch, worker.queues, 1) + finish + add, 100,000 queued, worker naming " + "; ".join(parts), **figures)


_MEASURE = """
import gc, random
from shiftboss.core import compiled_pool_state

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096

pool = compiled_pool_state()()
for priority in range(1, 11):
    pool.add_queue(f"q{priority}", priority)
rng = random.Random(7)
keys = [(k, f"q{rng.randrange(10) + 1}", float(rng.randrange(1000))) for k in range(COUNT)]
gc.collect()
before = rss()
for key, queue, scheduled in keys:
    pool.add_run(key, queue, scheduled)
print((rss() - before) / COUNT)
"""


def test_memory_per_queued_run(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    """RSS growth of a fresh process while 1,000,000 runs are queued (the arguments are built first)."""
    count = 1_000_000
    script = _MEASURE.replace("COUNT", str(count))
    out = benchmark.pedantic(
        lambda: subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout,
        rounds=1,
        iterations=1,
    )
    compiled = float(out.strip())
    tracemalloc.start()
    reference_pool, _ = filled(ReferencePoolState, 100_000, 10)
    reference = tracemalloc.get_traced_memory()[0] / 100_000
    tracemalloc.stop()
    report(
        f"memory per queued run: compiled {compiled:.0f} bytes (RSS growth, 1,000,000 runs), reference {reference:.0f} bytes (tracemalloc)",
        compiled_bytes=compiled,
        reference_bytes=reference,
    )
    del reference_pool


def look_times(pool: object, looks: int, how: str) -> list[float]:
    """Seconds per look at the next 10 runs a worker of every queue would be sent."""
    times = []
    for _ in range(looks):
        start = time.perf_counter()
        if how == "peek":
            pool.peek(2000.0, 0.0, None, 10)  # type: ignore[attr-defined]
        else:  # what NextRuns did before: admission on a copy of the whole state
            type(pool).from_snapshot(pool.snapshot()).admit(2000.0, 0.0, None, 10)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return sorted(times)


def test_next_runs_peek_at_a_million_queued(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    """`work-pool next` asks the core what a worker would be sent: a look that changes
    nothing. With 1,000,000 runs queued over 100 queues: the look, against admission on a
    copy of the state (which it replaces)."""
    pool, _ = filled(CompiledPoolState, 1_000_000)
    copied = look_times(pool, 3, "copy")
    looks = benchmark.pedantic(look_times, args=(pool, 2_000, "peek"), rounds=1, iterations=1)
    p50, p99 = looks[len(looks) // 2], looks[int(len(looks) * 0.99)]
    report(
        f"NextRuns core at 1,000,000 queued: peek p50 {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us; "
        f"copy-and-admit {copied[1] * 1e3:.0f} ms ({copied[1] / p50:,.0f}x the peek)",
        peek_p50_seconds=p50,
        peek_p99_seconds=p99,
        copy_admit_seconds=copied[1],
    )
