"""Work queues as Prefect's: renamed (the default one too) with everything on them, and
their health (late runs, last polled, last served, status) in work-queue inspect."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.v1 import common_pb2, pools_pb2
from tests.conftest import running_mesh
from tests.service.test_scheduler import next_dispatch, nothing_dispatched, wait_state, worker

FLOW = "flows/hello.py:hello"


async def test_prefect_work_queue_rename_keeps_its_runs_deployments_limit_and_place(client: AsyncClient) -> None:
    """Prefect's work queue update of `name`: the queue's runs (waiting, running, ended),
    its deployments, its priority, limit and held slots stay with it; a worker serving it
    goes on being served."""
    await client.create_work_pool("pool", "process", concurrency_limit=3)
    await client.create_work_queue("urgent", "pool", priority=1, concurrency_limit=1)
    await client.create_deployment("d", "pool", FLOW, queue="urgent")
    async with worker(client, "w", "pool", queues=["urgent"]) as stream:
        running = await client.create_flow_run("d")
        first = await next_dispatch(stream)
        stream.ack(first)
        stream.started(first.run, first.lease)
        await wait_state(client, running.id, "RUNNING")
        waiting = await client.create_flow_run("d")  # behind the queue's limit of 1
        later = await client.create_flow_run("d", start_in=3600)

        renamed = await client.update_work_queue("urgent", "pool", new_name="critical")
        assert (renamed.name, renamed.priority, renamed.concurrency_limit) == ("critical", 1, 1)
        assert [q.name for q in (await client.list_work_queues("pool")).work_queues] == ["critical", "default"]
        assert (await client.get_deployment("d")).queue == "critical"
        for run in (running, waiting, later):
            assert (await client.get_flow_run(run.id)).queue == "critical"
        slots = await client.list_queue_slots("critical", "pool")
        assert ([r.id for r in slots.flow_runs], slots.occupied, slots.limit) == ([running.id], 1, 1)
        explained = await client.explain_flow_run(waiting.id)
        assert "waiting for queue 'critical' limit (1/1 occupied)" in explained.message
        await nothing_dispatched(stream)

        stream.finished(first.run, first.lease, "COMPLETED", 0)  # frees the slot: the next goes to the same worker
        second = await next_dispatch(stream)
        assert second.run == waiting.id
        again = await client.create_flow_run("d", start_in=7200)
        assert again.queue == "critical"
    assert [r.id for r in (await client.list_flow_runs(queue="critical")).flow_runs] == [again.id, later.id, waiting.id, running.id]
    with pytest.raises(errors.NotFound, match="work queue 'urgent' not found in work pool 'pool'"):
        await client.get_work_queue("urgent", "pool")


async def test_prefect_default_work_queue_renamed_stays_the_pools_default(client: AsyncClient) -> None:
    """Prefect's work pool `default_queue_id`: the default queue may be renamed, and is
    still where deployments that name no queue go, and still cannot be deleted."""
    await client.create_work_pool("pool", "process")
    await client.create_deployment("before", "pool", FLOW)
    renamed = await client.update_work_queue("default", "pool", new_name="main", priority=2)
    assert (renamed.name, renamed.is_default, renamed.priority) == ("main", True, 2)
    pool = await client.get_work_pool("pool")
    assert (pool.default_queue, list(pool.queues)) == ("main", ["main"])
    assert (await client.get_deployment("before")).queue == "main"
    assert (await client.create_deployment("after", "pool", FLOW)).queue == "main"
    assert (await client.create_flow_run("after", start_in=3600)).queue == "main"
    with pytest.raises(errors.FailedPrecondition, match="work queue 'main' of work pool 'pool' cannot be deleted: it is the pool's default queue"):
        await client.delete_work_queue("main", "pool")
    await client.create_work_queue("default", "pool")  # the old name is free again, for another queue
    assert [(q.name, q.is_default) for q in (await client.list_work_queues("pool")).work_queues] == [("default", False), ("main", True)]
    await client.delete_work_queue("default", "pool")


async def test_prefect_work_queue_rename_mistakes_change_nothing(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_work_queue("low", "pool", concurrency_limit=2)
    await client.create_deployment("d", "pool", FLOW, queue="low")
    run = await client.create_flow_run("d", start_in=3600)
    with pytest.raises(errors.AlreadyExists, match="new_name: work queue 'default' already exists in work pool 'pool'"):
        await client.update_work_queue("low", "pool", new_name="default")
    for bad, said in (("", "must not be empty"), ("  ", "must not be empty"), ("a/b", "contains '/'"), (" low2", "leading or trailing")):
        with pytest.raises(errors.InvalidArgument, match=f"new_name: .*{said}"):
            await client.update_work_queue("low", "pool", new_name=bad, priority=5)
    with pytest.raises(errors.InvalidArgument, match="priority: must be a positive integer"):
        await client.update_work_queue("low", "pool", new_name="fine", priority=0)
    with pytest.raises(errors.NotFound, match="work queue 'nope' not found in work pool 'pool'"):
        await client.update_work_queue("nope", "pool", new_name="other")
    with pytest.raises(errors.NotFound, match="work pool 'nowhere' not found"):
        await client.update_work_queue("low", "nowhere", new_name="other")
    queue = await client.get_work_queue("low", "pool")
    assert (queue.name, queue.priority, queue.concurrency_limit) == ("low", 2, 2)
    assert (await client.get_deployment("d")).queue == "low"
    assert (await client.get_flow_run(run.id)).queue == "low"
    same = await client.update_work_queue("low", "pool", new_name="low", description="kept")  # its own name: no rename
    assert (same.name, same.description) == ("low", "kept")


async def test_prefect_work_queue_names_empty_once_trimmed_are_refused(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    for blank in ("", " ", "\t"):
        with pytest.raises(errors.InvalidArgument, match="name: must not be empty"):
            await client.create_work_queue(blank, "pool")
    assert [q.name for q in (await client.list_work_queues("pool")).work_queues] == ["default"]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A server on the test's database, and a client of it; stopped at the end (a restart
    is two of these in turn)."""
    async with running_mesh(settings) as mesh, AsyncClient(f"127.0.0.1:{mesh.port}", timeout=10) as client:
        yield client


async def until_ready(client: AsyncClient, queue: str, pool: str) -> pools_pb2.WorkQueue:
    """The queue once READY: marked with the next beat of a worker serving it."""
    deadline = asyncio.get_running_loop().time() + 10
    while (shown := await client.get_work_queue(queue, pool)).status != common_pb2.READY:
        assert asyncio.get_running_loop().time() < deadline, f"work queue {queue!r} never became READY"
        await asyncio.sleep(0.05)
    return shown


async def test_prefect_work_queue_rename_is_followed_after_a_stop_in_between(settings: Settings) -> None:
    """The queue was renamed in PoolService's tables and the server stopped before the
    scheduler's deployments and runs followed: they follow when it starts again."""
    async with serving(settings) as client:
        await client.create_work_pool("pool", "process")
        await client.create_work_queue("old", "pool")
        await client.create_deployment("d", "pool", FLOW, queue="old")
        run = await client.create_flow_run("d")
    engine = create_async_engine(settings.database_url)  # what the first of the rename's two transactions leaves
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE work_queues SET name = 'new', renamed_from = 'old' WHERE name = 'old'"))
    finally:
        await engine.dispose()
    async with serving(settings) as client:
        async with worker(client, "w", "pool", queues=["new"]) as stream:  # served once the scheduler follows
            assert (await next_dispatch(stream)).run == run.id
        assert (await client.get_flow_run(run.id)).queue == "new"
        assert (await client.get_deployment("d")).queue == "new"
        assert (await client.create_flow_run("d", start_in=60)).queue == "new"


async def test_prefect_work_queue_rename_the_scheduler_cannot_follow_is_undone(settings: Settings) -> None:
    """PoolService whose scheduler does not answer: the rename is refused (UNAVAILABLE) and
    undone, so queues and runs never disagree on a name."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    alone = Mesh(
        settings.replace(port=0, host="127.0.0.1", scheduler_address=dead, heartbeats_address=dead, request_timeout=0.5),
        ["pools", "templates"],
    )
    port = await alone.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=30) as client:
            await client.create_work_pool("pool", "process")
            with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):  # as the call to it ended
                await client.update_work_queue("default", "pool", new_name="main", priority=3)
    finally:
        await alone.stop(0)
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT name, renamed_from, priority, is_default FROM work_queues"))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("default", None, 1, True)]


async def test_prefect_work_queue_status_late_runs_last_polled_and_last_served(client: AsyncClient) -> None:
    """Prefect's work queue status: NOT_READY until a worker polls it, READY while one did
    within a minute, PAUSED when paused; with its late runs and when it last gave one out."""
    await client.create_work_pool("pool", "process")
    await client.create_work_queue("q", "pool")
    await client.create_deployment("d", "pool", FLOW, queue="q")
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    late = [await client.create_flow_run("d", start_at=past) for _ in range(2)]
    await client.create_flow_run("d", start_in=3600)  # waiting, not late
    fresh = await client.get_work_queue("q", "pool")
    assert (fresh.status, fresh.late_runs, fresh.HasField("last_polled"), fresh.HasField("last_served")) == (
        common_pb2.NOT_READY, 2, False, False
    )
    assert (await client.get_work_queue("default", "pool")).late_runs == 0
    before = datetime.now(timezone.utc)
    async with worker(client, "w", "pool", queues=["q"]) as stream:
        for _ in late:
            dispatch = await next_dispatch(stream)
            stream.ack(dispatch)
        for run in late:
            await wait_state(client, run.id, "PENDING")
        served = await until_ready(client, "q", "pool")
    assert served.late_runs == 0
    assert served.last_served.ToDatetime(tzinfo=timezone.utc) >= before - timedelta(seconds=1)
    assert served.last_polled.ToDatetime(tzinfo=timezone.utc) >= before - timedelta(seconds=1)
    listed = {q.name: q for q in (await client.list_work_queues("pool")).work_queues}
    assert (listed["q"].status, listed["default"].status) == (common_pb2.READY, common_pb2.NOT_READY)
    paused = await client.pause_work_queue("q", "pool")
    assert paused.status == common_pb2.PAUSED
    assert (await client.get_work_queue("q", "pool")).status == common_pb2.PAUSED


async def test_prefect_work_queue_last_polled_survives_a_restart(settings: Settings) -> None:
    """The database is the truth: a queue a worker served just before a restart is still
    READY after it, with its last_polled and last_served."""
    async with serving(settings) as client:
        await client.create_work_pool("pool", "process")
        await client.create_deployment("d", "pool", FLOW)
        run = await client.create_flow_run("d")
        async with worker(client, "w", "pool") as stream:
            stream.ack(await next_dispatch(stream))
            await wait_state(client, run.id, "PENDING")
            before = await until_ready(client, "default", "pool")
    async with serving(settings) as client:
        after = await client.get_work_queue("default", "pool")
    assert after.status == common_pb2.READY
    assert after.last_polled.ToNanoseconds() >= before.last_polled.ToNanoseconds() > 0  # a beat in flight may mark it again
    assert after.last_served == before.last_served and before.last_served.ToNanoseconds() > 0
