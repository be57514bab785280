"""Benchmarks print one summary line each; `make bench` shows them (-s) and keeps every
figure in bench/results.json (with the machine, its load and the commit), so a regression
shows against the last run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).with_name("results.json")
_figures: dict[str, dict[str, Any]] = {}


@pytest.fixture
def report(benchmark, capsys, request):  # type: ignore[no-untyped-def]
    """Record a figure in the benchmark's extra info and the results file, and print it."""

    def emit(line: str, **figures: float) -> None:
        benchmark.extra_info.update(figures)
        _figures[request.node.nodeid] = {"summary": line, **figures}
        with capsys.disabled():
            print(f"\n  {line}")

    return emit


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _figures:
        return
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text()).get("figures", {})
        except ValueError:
            previous = {}
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        # A bench run with -k keeps the figures of the benches it did not run.
        "figures": {**previous, **_figures},
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", f"bench figures (kept in {RESULTS.name})")
        for name, figures in sorted(_figures.items()):
            reporter.write_line(f"{name}: {figures['summary']}")
