"""One round of bench/test_telemetry_bench.py, telemetry off or on at a sampling ratio, run under callgrind by
its instruction-count test: the server's user-space instructions are counted during the
measured burst alone (callgrind starts with counting off; `callgrind_control` turns it on
and off around the burst).

    valgrind --tool=callgrind --instr-atstart=no python -m bench._instructions BACKEND off|RATIO RUNS SINK

Prints the round's runs per second and CPU per run (both slowed by callgrind, so not
figures of their own); the instruction count is callgrind's `Collected` line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.test_telemetry_bench import throughput, traced
from shiftboss import telemetry


def counting(state: str) -> None:
    subprocess.run(["callgrind_control", "--instr", state, str(os.getpid())], check=True, stdout=subprocess.DEVNULL)


@contextmanager
def counted() -> Iterator[None]:
    counting("on")
    try:
        yield
    finally:
        counting("off")


def main() -> None:
    backend, mode, runs, sink = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    tmp = Path(tempfile.mkdtemp(prefix="shiftboss-instructions-"))
    ratio = None if mode == "off" else float(mode)
    installed = None if ratio is None else traced(ratio, sink)
    with telemetry.use(installed):
        print(*asyncio.run(throughput(backend, tmp, runs, ratio, burst=counted)))
    if installed is not None:
        installed.shutdown()


if __name__ == "__main__":
    main()
