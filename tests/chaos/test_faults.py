"""The fault suite: ordinary events (a worker killed, restarted under its name; the server
stopped or killed and started again; the database restarted or its postmaster killed)
under load, each counted from the evidence the flows leave (tests/chaos/harness.py).

`make test` runs the short scenarios (SQLite, the worker and server faults); `make chaos`
runs every scenario on SQLite and on a private PostgreSQL, with more runs, and prints the
table the README shows.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.harness import LEASE_SECONDS, Cluster, Report, cluster, wait_until

FULL = os.environ.get("SHIFTBOSS_CHAOS") == "full"
#: Runs per scenario: a pool of limit 6 and two workers of -l 4, runs of half a second.
RUNS = 120 if FULL else 40
REPORTS: list[Report] = []


def kill_a_worker(c: Cluster, runs: list[str]) -> None:
    c.workers["w0"].wait_for_line(") started")  # it holds a run that is running
    c.workers["w0"].kill()
    c.start_worker("w2")  # a new name takes its place


def restart_a_worker_under_its_name(c: Cluster, runs: list[str]) -> None:
    c.workers["w0"].wait_for_line(") started")
    c.workers["w0"].kill()
    c.start_worker("w0")  # within the heartbeat window: it never looked OFFLINE


def stop_and_start_the_server(c: Cluster, runs: list[str]) -> None:
    c.stop_server(signal.SIGTERM)
    c.start_server()


def kill_and_start_the_server(c: Cluster, runs: list[str]) -> None:
    c.stop_server(signal.SIGKILL)
    c.start_server()


def restart_postgres(c: Cluster, runs: list[str]) -> None:
    c.database.restart_fast()  # type: ignore[attr-defined]


def postgres_down_longer_than_a_lease(c: Cluster, runs: list[str]) -> None:
    c.database.down_for(LEASE_SECONDS + 2)  # type: ignore[attr-defined]


def create_through_an_outage(c: Cluster, runs: list[str]) -> None:
    """Runs created, one call each, while PostgreSQL is down for 3 s: each call is retried
    by the SDK until the server can write it, with the same idempotency key."""
    made: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            made.extend(c.create_runs(20))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    creating = threading.Thread(target=create)
    c.database.stop_fast()  # type: ignore[attr-defined]
    creating.start()
    time.sleep(3)  # the outage, with the creates under way
    c.database.start()  # type: ignore[attr-defined]
    creating.join(60)
    assert not errors, f"a create failed through the outage: {errors[0]!r}"
    runs.extend(made)


def kill_the_postmaster(c: Cluster, runs: list[str]) -> None:
    c.database.kill_postmaster()  # type: ignore[attr-defined]


SCENARIOS: list[tuple[str, Callable[[Cluster, list[str]], None], bool, bool]] = [
    # (name, fault, on PostgreSQL, in make test)
    ("kill -9 a worker, new name", kill_a_worker, False, True),
    ("kill -9 a worker, same name", restart_a_worker_under_its_name, False, True),
    ("server SIGTERM, restart", stop_and_start_the_server, False, True),
    ("server kill -9, restart", kill_and_start_the_server, False, False),
    ("kill -9 a worker, same name (pg)", restart_a_worker_under_its_name, True, False),
    ("server SIGTERM, restart (pg)", stop_and_start_the_server, True, False),
    ("server kill -9, restart (pg)", kill_and_start_the_server, True, False),
    ("pg_ctl restart -m fast", restart_postgres, True, False),
    ("kill -9 of the postmaster", kill_the_postmaster, True, False),
    ("postgres down longer than a lease", postgres_down_longer_than_a_lease, True, False),
    ("creates retried through an outage", create_through_an_outage, True, False),
]


@pytest.mark.parametrize(
    ("name", "fault", "postgres"),
    [pytest.param(n, f, pg, id=n, marks=() if short or FULL else pytest.mark.skip(reason="make chaos")) for n, f, pg, short in SCENARIOS],
)
def test_nothing_lost_stuck_or_run_twice(name: str, fault: Callable[[Cluster, list[str]], None], postgres: bool, tmp_path: Path) -> None:
    with cluster(tmp_path, postgres) as c:
        runs = c.create_runs(RUNS)
        # Mid-load: some runs done, some running, most waiting behind the pool's limit.
        wait_until(lambda: len(c.executions()) >= 8, 60, "the first runs to start")
        fault_at = time.time()
        fault(c, runs)
        report = c.report(name, runs, fault_at, over_at=time.time())
    REPORTS.append(report)
    print(f"\n{Report.header()}\n{report.row()}")
    assert not report.failures(), f"{name}: {'; '.join(report.failures())}\n{Report.header()}\n{report.row()}"
