"""Two scheduler replicas on one PostgreSQL database, in this process: who owns a pool,
the database refusing a stale owner's writes (fencing), forwarded calls, redirected worker
streams, and changes made through one replica seen by the other within a second."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.services.scheduler import hot, states
from shiftboss.services.scheduler.ownership import Fence, Fenced, NotOwner
from shiftboss.settings import Settings
from shiftboss.stream import Redirected, WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.conftest import running_mesh, scheduler


@pytest.fixture
def settings(settings: Settings, backend: str) -> Settings:  # type: ignore[override]
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; SQLite serves one server")
    # A long lease: ownership moves only when a test moves it.
    return settings.replace(replica_ttl_seconds=30.0)


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[Mesh, Mesh]]:
    async with running_mesh(settings) as first, running_mesh(settings) as second:
        yield first, second


async def until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def owner_and_other(replicas: tuple[Mesh, Mesh], pool: str) -> tuple[Mesh, Mesh]:
    a, b = replicas
    await scheduler(a).ownership.route(pool)  # taken by one of them, whichever was first
    await until(lambda: any(pool in scheduler(m).ownership.owned for m in replicas))
    return (a, b) if pool in scheduler(a).ownership.owned else (b, a)


async def made_through(mesh: Mesh, pool: str, limit: int | None = None) -> None:
    async with AsyncClient(mesh.settings.api_address, timeout=10) as client:
        await client.create_work_pool(pool, "process", concurrency_limit=limit)
        await client.create_deployment("d", pool, "flows/f.py:f")


async def test_a_pool_made_through_one_replica_is_known_to_the_other_at_once(replicas: tuple[Mesh, Mesh]) -> None:
    a, b = replicas
    async with AsyncClient(a.settings.api_address, timeout=10) as ca, AsyncClient(b.settings.api_address, timeout=10) as cb:
        await ca.create_work_pool("etl", "process")
        made = time.monotonic()
        await until(lambda: scheduler(b).dispatcher.knows_queue("etl", "default"), 1.0)
        assert time.monotonic() - made < 1.0
        await cb.create_deployment("d", "etl", "flows/f.py:f")
        await cb.create_work_queue("fast", "etl", priority=1)
        await until(lambda: scheduler(a).dispatcher.knows_queue("etl", "fast"), 1.0)
        run = await ca.create_flow_run("d", queue="fast")
        assert run.queue == "fast"


async def test_the_database_refuses_a_stale_owners_writes(replicas: tuple[Mesh, Mesh], settings: Settings) -> None:
    a, _ = replicas
    await made_through(a, "etl", limit=1)
    old, new = await owner_and_other(replicas, "etl")
    async with AsyncClient(old.settings.api_address, timeout=10) as client:
        run = await client.create_flow_run("d")
    stale = scheduler(old).ownership
    epoch = stale.owned["etl"]
    # The owner stops renewing (paused, cut off): its lease runs out; the other takes the pool.
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("UPDATE scheduler_replicas SET expires = now() - interval '1 second' WHERE id = $1", stale.replica)
    finally:
        await connection.close()
    assert await scheduler(new).ownership.route("etl") is None
    assert scheduler(new).ownership.owned["etl"] == epoch + 1
    assert "etl" in stale.owned  # it has not noticed yet
    # Its next write for the pool is refused by the database, and it lets the pool go.
    with pytest.raises(Fenced):
        await scheduler(old).change_state(run.id, states.CANCELLED, message="by a stale owner")
    assert "etl" not in stale.owned
    with pytest.raises(NotOwner):
        await scheduler(old).change_state(run.id, states.CANCELLED, message="by a stale owner")
    # A lease on the dispatch path, fenced at the old epoch: refused too, nothing leased.
    with pytest.raises(Fenced):
        async with hot.transaction(scheduler(old).db, Fence(stale, {"etl": epoch})) as db:
            await db.lease([1], "etl/w", datetime.now(timezone.utc), 30)
    async with AsyncClient(new.settings.api_address, timeout=10) as client:
        assert scheduler_pb2.RunState.Name((await client.get_flow_run(run.id)).state) in ("SCHEDULED", "LATE")
        # The new owner changes it.
        cancelled = await client.cancel_flow_run(run.id)
        assert scheduler_pb2.RunState.Name(cancelled.state) == "CANCELLED"


async def test_a_worker_is_sent_to_the_owner_and_calls_are_forwarded(replicas: tuple[Mesh, Mesh]) -> None:
    a, _ = replicas
    await made_through(a, "etl")
    owner, other = await owner_and_other(replicas, "etl")
    async with AsyncClient(other.settings.api_address, timeout=10) as through_other:
        stream = WorkerStream(through_other, scheduler_pb2.Hello(name="w", pool="etl"))
        with pytest.raises(Redirected) as redirected:
            await stream.open(10)
        assert redirected.value.address == owner.settings.api_address
        assert set(redirected.value.replicas) == {owner.settings.api_address, other.settings.api_address}
        run = await through_other.create_flow_run("d")
        # Explain and next need the owner's admission state: forwarded to it (which learned
        # of the run from the other's notice).
        await until(lambda: run_seq_in_core(owner, "etl"))
        explained = await through_other.explain_flow_run(run.id)
        assert explained.blocker == "no_worker", explained
        upcoming = await through_other.next_runs("etl")
        assert [r.id for r in upcoming.flow_runs] == [run.id]
        # A watch through the other replica follows what happens at the owner.
        seen: list[str] = []

        async def watch() -> None:
            async for event in through_other.watch_flow_run(run.id, timeout=20):
                if event.kind == "state":
                    seen.append(scheduler_pb2.RunState.Name(event.state))

        watching = asyncio.create_task(watch())
        async with AsyncClient(redirected.value.address, timeout=10) as at_owner:
            stream = WorkerStream(at_owner, scheduler_pb2.Hello(name="w", pool="etl"))
            welcome = await stream.open(10)
            assert welcome.ping_seconds > 0
            message = await stream.receive(10)
            assert message is not None and message.dispatch.run == run.id
            stream.ack(message.dispatch)
            # A cancel through the other replica reaches the worker through the owner.
            await through_other.cancel_flow_run(run.id)
            cancel = await stream.receive(10)
            assert cancel is not None and cancel.cancel.run == run.id
            stream.finished(run.id, message.dispatch.lease, "CANCELLED")
            await asyncio.wait_for(watching, 10)
            assert seen == ["SCHEDULED", "PENDING", "CANCELLING", "CANCELLED"], seen
            await stream.close()


async def test_prefect_work_queue_renamed_through_the_other_replica_is_renamed_at_the_owner(replicas: tuple[Mesh, Mesh]) -> None:
    """The rename is forwarded to the pool's owner, which moves the runs and its admission
    state together; the other replica's view follows from the notice."""
    a, _ = replicas
    await made_through(a, "etl")
    owner, other = await owner_and_other(replicas, "etl")
    async with AsyncClient(other.settings.api_address, timeout=10) as through_other:
        waiting = await through_other.create_flow_run("d")
        await until(lambda: run_seq_in_core(owner, "etl"))
        renamed = await through_other.update_work_queue("default", "etl", new_name="main")
        assert (renamed.name, renamed.is_default) == ("main", True)
        assert scheduler(owner).dispatcher.pools["etl"].state.queues() == ["main"]  # before the call returned
        await until(lambda: scheduler(other).dispatcher.knows_queue("etl", "main"), 1.0)
        assert not scheduler(other).dispatcher.knows_queue("etl", "default")
        assert (await through_other.get_flow_run(waiting.id)).queue == "main"
        async with AsyncClient(owner.settings.api_address, timeout=10) as at_owner:
            stream = WorkerStream(at_owner, scheduler_pb2.Hello(name="w", pool="etl", queues=["main"]))
            await stream.open(10)
            message = await stream.receive(10)
            assert message is not None and message.dispatch.run == waiting.id
            await stream.close()


async def test_runs_made_in_bulk_through_the_other_replica_reach_the_owners_worker(replicas: tuple[Mesh, Mesh]) -> None:
    a, _ = replicas
    await made_through(a, "etl")
    owner, other = await owner_and_other(replicas, "etl")
    async with AsyncClient(other.settings.api_address, timeout=10) as through_other:
        # Enough runs that the owner is told of them in several notices.
        made = await through_other.create_flow_runs([{"deployment": "d"}] * 500)
    # Told at commit, not found by the owner's periodic reconcile (every 10 s).
    await until(lambda: len(scheduler(owner).dispatcher.pools["etl"].state) == 500, 2.0)
    async with AsyncClient(owner.settings.api_address, timeout=10) as at_owner:
        stream = WorkerStream(at_owner, scheduler_pb2.Hello(name="w", pool="etl"))
        await stream.open(10)
        received: list[str] = []
        while len(received) < len(made.ids):
            message = await stream.receive(10)
            assert message is not None, f"the stream ended after {len(received)} runs"
            if message.WhichOneof("kind") == "dispatch":
                received.append(message.dispatch.run)
        assert sorted(received) == sorted(made.ids)
        await stream.close()


def run_seq_in_core(mesh: Mesh, pool: str) -> bool:
    runtime = scheduler(mesh).dispatcher.pools.get(pool)
    return runtime is not None and len(runtime.state) > 0


async def test_pools_spread_over_the_replicas_and_come_back_when_one_stops(settings: Settings) -> None:
    quick = settings.replace(replica_ttl_seconds=2.0)
    names = ["p1", "p2", "p3", "p4"]
    async with running_mesh(quick) as a:
        async with AsyncClient(a.settings.api_address, timeout=10) as client:
            for name in names:
                await client.create_work_pool(name, "process")
        first = scheduler(a).ownership
        await until(lambda: set(first.owned) == set(names), 10)
        async with running_mesh(quick) as b:
            second = scheduler(b).ownership
            # B joins: pools move to it, one a tick, until the two hold two each.
            await until(lambda: len(second.owned) == 2 and len(first.owned) == 2, 15)
            assert set(first.owned) | set(second.owned) == set(names)
        # B stops: it hands its pools back at once, and A takes them (its fair share is all now).
        await until(lambda: set(first.owned) == set(names), 5)


async def test_replicas_on_other_machines_share_the_schedulers_key(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With no SHIFTBOSS_SECRET_KEY, replicas with homes of their own read one key from the
    database: a run token one signs passes on the other, a value one seals the other opens."""
    first, second = settings.replace(home=str(tmp_path / "a")), settings.replace(home=str(tmp_path / "b"))
    async with running_mesh(first) as a, running_mesh(second) as b:
        signer, checker = scheduler(a).seal, scheduler(b).seal
        assert checker.check_run_token(signer.run_token("run-1", 3)) == ("run-1", 3)
        assert checker.open(signer.seal({"password": "s3cr3t"})) == {"password": "s3cr3t"}
    assert not (tmp_path / "a" / "secret.key").exists()  # the key is not left in a home as well
