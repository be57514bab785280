"""Scheduler replicas on one PostgreSQL: each pool owned by one of them, fenced writes,
failover (tests/chaos/replicas.py).

`make test` runs the short scenario: three replicas on a fresh database of the shared
PostgreSQL, a pool of limit 3, workers attached to different replicas, runs created
through all of them; then kill -9 of the pool's owner mid-load. `make chaos` adds the
paused owner (SIGSTOP past the ownership lease, then SIGCONT) and more runs, on a private
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftboss.v1 import scheduler_pb2
from tests.chaos.harness import PrivatePostgres, Report, wait_until
from tests.chaos.replicas import REPLICA_TTL_SECONDS, replica_cluster
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_url

FULL = os.environ.get("SHIFTBOSS_CHAOS") == "full"
RUNS = 90 if FULL else 30
REPORTS: list[Report] = []
#: Failover the README promises: another replica dispatches the pool within this, p99.
FAILOVER_SECONDS = 5.0


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database: on a private PostgreSQL with make chaos, else on the shared one."""
    if FULL:
        private = PrivatePostgres().start()
        try:
            yield private.url
        finally:
            private.stop()
        return
    name = asyncio.run(create_postgres_database())
    try:
        yield postgres_url(name)
    finally:
        asyncio.run(drop_postgres_database(name))


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGKILL, id="kill -9"),
        pytest.param(signal.SIGTERM, id="SIGTERM", marks=() if FULL else pytest.mark.skip(reason="make chaos")),
    ],
)
def test_replicas_run_each_run_once_within_the_limit_and_fail_over(tmp_path: Path, database: str, sig: int) -> None:
    """The owner dies (kill -9: its lease runs out) or stops (SIGTERM: it hands its pools back)."""
    name = "kill -9" if sig == signal.SIGKILL else "SIGTERM"
    with replica_cluster(tmp_path, database) as c:
        owner, _ = c.wait_for_owner(10)
        # Explain and next through a replica that does not own the pool: answered by the owner.
        other = next(i for i in c.alive() if i != owner)
        first = c.create_runs(1)
        with c.client(other) as client:
            assert client.explain_flow_run(first[0]).blocker != "unknown"  # the owner holds it
            client.next_runs("chaos")
        runs = first + c.create_runs(RUNS - 1)
        wait_until(lambda: len(c.executions()) >= 8, 60, "the first runs to start")
        killed_at = time.time()
        c.kill(owner, sig)
        new_owner, took = c.wait_for_owner(3 * FAILOVER_SECONDS, other_than=owner)
        report = c.report(f"replicas: {name} the owner", runs, killed_at, over_at=killed_at)
        resumed = c.first_dispatch_after(killed_at + 0.05)
    report.recovery_seconds = resumed
    REPORTS.append(report)
    print(f"\nownership moved from replica {owner} to {new_owner} in {took:.2f}s after {name}; dispatch resumed after {resumed}s")
    print(f"{Report.header()}\n{report.row()}")
    assert not report.failures(), f"{'; '.join(report.failures())}\n{Report.header()}\n{report.row()}"
    assert took <= FAILOVER_SECONDS, f"the pool had no live owner for {took:.1f}s"
    assert resumed is not None and resumed <= FAILOVER_SECONDS, f"dispatch resumed {resumed}s after the owner was killed"


@pytest.mark.skipif(not FULL, reason="make chaos")
def test_a_paused_owner_is_fenced(tmp_path: Path, database: str) -> None:
    """SIGSTOP the owner past its lease: another replica takes the pool; on SIGCONT the old
    owner's writes are refused by the database, and nothing runs twice or past the limit."""
    with replica_cluster(tmp_path, database) as c:
        owner, _ = c.wait_for_owner(10)
        runs = c.create_runs(RUNS)
        wait_until(lambda: len(c.executions()) >= 8, 60, "the first runs to start")
        paused_at = time.time()
        c.kill(owner, signal.SIGSTOP)
        new_owner, took = c.wait_for_owner(3 * FAILOVER_SECONDS, other_than=owner)
        time.sleep(REPLICA_TTL_SECONDS)
        c.kill(owner, signal.SIGCONT)
        resumed_at = time.time()
        report = c.report("replicas: SIGSTOP the owner", runs, paused_at, over_at=resumed_at)
        # Recovery: from the pause to the first dispatch by the new owner.
        report.recovery_seconds = c.first_dispatch_after(paused_at + 0.05)
        server = c.servers[owner]
        assert server is not None
        lost = [line.strip() for line in server.lines if "lost work pool chaos" in line]
    REPORTS.append(report)
    print(f"\nownership moved from replica {owner} to {new_owner} in {took:.2f}s after SIGSTOP; the old owner on SIGCONT:")
    print("\n".join(f"  {line}" for line in lost))
    print(f"{Report.header()}\n{report.row()}")
    assert lost, "the old owner never learned it lost the pool"
    assert not report.failures(), f"{'; '.join(report.failures())}\n{Report.header()}\n{report.row()}"


@pytest.mark.skipif(not FULL, reason="make chaos")
def test_failover_time_over_repeated_kills(tmp_path: Path, database: str) -> None:
    """kill -9 of whichever replica owns the pool, then start it again, KILLS times under a
    steady trickle of runs: how long from each kill until the next run is dispatched."""
    kills, times = 8, []
    with replica_cluster(tmp_path, database) as c:
        runs: list[str] = []
        for _ in range(kills):
            owner, _ = c.wait_for_owner(3 * FAILOVER_SECONDS)
            runs += c.create_runs(12)
            wait_until(lambda: len(c.executions()) >= len(runs) - 6, 60, "runs to start")
            killed_at = time.time()
            c.kill(owner)
            trickle = c.create_runs(3)  # through the live replicas, while the pool has no owner
            runs += trickle
            c.settle(trickle, 30)
            resumed = c.first_dispatch_after(killed_at + 0.05)
            assert resumed is not None
            times.append(resumed)
            c.start_replica(owner)
        report = c.report("replicas: 8 x kill -9 the owner", runs, 0.0, over_at=time.time())
        crashed = [f"{r.id[:8]} on {r.worker}: {r.message}" for r in c.states(runs).values() if r is not None and r.state == scheduler_pb2.CRASHED]
    if crashed:
        print("\ncrashed (ended, not run again):\n  " + "\n  ".join(crashed))
    times.sort()
    report.recovery_seconds = times[-1]
    REPORTS.append(report)
    print(f"\ndispatch resumed after each kill -9 of the owner: {', '.join(f'{t:.2f}' for t in times)} s "
          f"(median {times[len(times) // 2]:.2f}, max {times[-1]:.2f})")
    print(f"{Report.header()}\n{report.row()}")
    assert not report.failures(), f"{'; '.join(report.failures())}\n{Report.header()}\n{report.row()}"
    assert times[-1] <= FAILOVER_SECONDS, f"dispatch resumed {times[-1]:.1f}s after a kill"
