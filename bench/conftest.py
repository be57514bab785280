"""Benchmarks print one summary line each; `make bench` shows them (-s)."""

from __future__ import annotations

import pytest


@pytest.fixture
def report(benchmark, capsys):  # type: ignore[no-untyped-def]
    """Record a figure in the benchmark's extra info and print it."""

    def emit(line: str, **figures: float) -> None:
        benchmark.extra_info.update(figures)
        with capsys.disabled():
            print(f"\n  {line}")

    return emit
