"""PoolService over real gRPC on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.services.db import open_database, release_database
from shiftboss.services.pools.models import WorkPoolRow, WorkQueueRow
from shiftboss.v1 import common_pb2, pools_pb2


async def queue_order(client: AsyncClient, pool: str) -> list[tuple[str, int]]:
    reply = await client.list_work_queues(pool)
    return [(q.name, q.priority) for q in reply.work_queues]


async def count_rows(url: str, model: type) -> int:
    db = open_database(url)
    try:
        async with db.reading() as session:
            return (await session.execute(select(func.count()).select_from(model))).scalar_one()
    finally:
        await release_database(db)


async def test_create_pool_comes_with_default_queue_and_template(client: AsyncClient) -> None:
    pool = await client.create_work_pool("my-pool", "process", description="laptop")
    assert pool.name == "my-pool"
    assert pool.type == "process"
    assert pool.description == "laptop"
    assert not pool.paused
    assert not pool.HasField("concurrency_limit")
    assert pool.status == common_pb2.NOT_READY
    assert "job_configuration" in pool.base_job_template.fields
    assert list(pool.queues) == ["default"]
    assert await queue_order(client, "my-pool") == [("default", 1)]
    fetched = await client.get_work_pool("my-pool")
    assert fetched.id == pool.id


async def test_list_pools_sorted_by_name(client: AsyncClient) -> None:
    for name in ("b-pool", "a-pool", "c-pool"):
        await client.create_work_pool(name, "process")
    reply = await client.list_work_pools()
    assert [p.name for p in reply.work_pools] == ["a-pool", "b-pool", "c-pool"]


async def test_duplicate_pool_is_already_exists(client: AsyncClient) -> None:
    await client.create_work_pool("dup", "process")
    with pytest.raises(errors.AlreadyExists, match="work pool 'dup' already exists"):
        await client.create_work_pool("dup", "docker")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a/b", "'/'"),
        ("50%", "'%'"),
        ("x&y", "'&'"),
        ("<pool>", "'<' '>'"),
        ("", "must not be empty"),
        (" ", "must not be empty"),
        ("  ", "must not be empty"),
        (" p", "leading or trailing whitespace"),
        ("p" * 256, "longer than the limit of 255"),
    ],
)
async def test_bad_pool_names_are_invalid_argument(client: AsyncClient, db_url: str, name: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="name: ") as caught:
        await client.create_work_pool(name, "process")
    assert fragment in caught.value.message
    assert await count_rows(db_url, WorkPoolRow) == 0


async def test_unknown_type_and_bad_limits_are_refused_without_rows(client: AsyncClient, db_url: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="type: unknown work pool type 'k8s'"):
        await client.create_work_pool("p", "k8s")
    with pytest.raises(errors.InvalidArgument, match="concurrency_limit: must be at least 1, got 0"):
        await client.create_work_pool("p", "process", concurrency_limit=0)
    with pytest.raises(errors.InvalidArgument, match="concurrency_limit: must be at least 1, got -3"):
        await client.create_work_pool("p", "process", concurrency_limit=-3)
    assert await count_rows(db_url, WorkPoolRow) == 0
    assert await count_rows(db_url, WorkQueueRow) == 0


async def test_the_largest_limit_is_held_and_a_larger_one_refused_naming_the_bound(client: AsyncClient, db_url: str) -> None:
    """The contract's int32 bounds a limit on the wire; a caller inside the process meets the
    same bound as INVALID_ARGUMENT, never a database error or a truncated limit."""
    from shiftboss.services.pools import domain

    top = 2**31 - 1
    assert (await client.create_work_pool("big", "process", concurrency_limit=top)).concurrency_limit == top
    assert (await client.create_work_queue("q", "big", concurrency_limit=top)).concurrency_limit == top
    assert (await client.get_work_pool("big")).concurrency_limit == top
    db = open_database(db_url)
    try:
        for value in (top + 1, 2**32, 2**63):
            with pytest.raises(errors.InvalidArgument, match=f"concurrency_limit: must be at most {top}, got {value}"):
                async with db.transaction() as session:
                    await domain.create_pool(session, name="huge", type="process", concurrency_limit=value, base_job_template={})
            with pytest.raises(errors.InvalidArgument, match=f"concurrency_limit: must be at most {top}, got {value}"):
                async with db.transaction() as session:
                    await domain.update_queue(session, "big", "q", concurrency_limit=value)
    finally:
        await release_database(db)
    assert await count_rows(db_url, WorkPoolRow) == 1
    assert (await client.get_work_queue("q", "big")).concurrency_limit == top


async def test_unknown_pool_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.get_work_pool("ghost")
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.pause_work_pool("ghost")
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.create_work_queue("q", "ghost")
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.list_work_queues("ghost")


async def test_pool_limit_set_clear_update(client: AsyncClient) -> None:
    await client.create_work_pool("lim", "process", concurrency_limit=5)
    assert (await client.get_work_pool("lim")).concurrency_limit == 5
    assert (await client.set_work_pool_concurrency_limit("lim", 2)).concurrency_limit == 2
    cleared = await client.clear_work_pool_concurrency_limit("lim")
    assert not cleared.HasField("concurrency_limit")
    updated = await client.update_work_pool("lim", description="new", concurrency_limit=7)
    assert (updated.description, updated.concurrency_limit) == ("new", 7)
    with pytest.raises(errors.InvalidArgument, match="concurrency_limit: must be at least 1, got -1"):
        await client.set_work_pool_concurrency_limit("lim", -1)
    assert (await client.get_work_pool("lim")).concurrency_limit == 7


async def test_pause_resume_pool_and_status(client: AsyncClient) -> None:
    await client.create_work_pool("pz", "process", paused=True)
    assert (await client.get_work_pool("pz")).status == common_pb2.PAUSED
    resumed = await client.resume_work_pool("pz")
    assert (resumed.paused, resumed.status) == (False, common_pb2.NOT_READY)
    paused = await client.pause_work_pool("pz")
    assert (paused.paused, paused.status) == (True, common_pb2.PAUSED)


async def test_delete_pool_removes_its_queues(client: AsyncClient, db_url: str) -> None:
    await client.create_work_pool("gone", "process")
    await client.create_work_queue("q1", "gone")
    await client.delete_work_pool("gone")
    with pytest.raises(errors.NotFound):
        await client.get_work_pool("gone")
    assert await count_rows(db_url, WorkQueueRow) == 0
    with pytest.raises(errors.NotFound, match="work pool 'gone' not found"):
        await client.delete_work_pool("gone")


async def test_priority_shift_rule(client: AsyncClient) -> None:
    await client.create_work_pool("prio", "process")
    await client.create_work_queue("A", "prio")
    await client.create_work_queue("B", "prio")
    assert await queue_order(client, "prio") == [("default", 1), ("A", 2), ("B", 3)]
    created = await client.create_work_queue("C", "prio", priority=2)
    assert created.priority == 2
    assert await queue_order(client, "prio") == [("default", 1), ("C", 2), ("A", 3), ("B", 4)]


async def test_queue_without_priority_takes_lowest_free_number(client: AsyncClient) -> None:
    await client.create_work_pool("gaps", "process")
    await client.create_work_queue("A", "gaps", priority=5)
    assert (await client.create_work_queue("B", "gaps")).priority == 2
    await client.delete_work_queue("B", "gaps")
    assert await queue_order(client, "gaps") == [("default", 1), ("A", 5)]
    assert (await client.create_work_queue("C", "gaps")).priority == 2


async def test_shift_stops_at_a_gap_and_update_moves_queues(client: AsyncClient) -> None:
    await client.create_work_pool("gap2", "process")
    await client.create_work_queue("A", "gap2", priority=2)
    await client.create_work_queue("B", "gap2", priority=5)
    await client.create_work_queue("C", "gap2", priority=2)
    assert await queue_order(client, "gap2") == [("default", 1), ("C", 2), ("A", 3), ("B", 5)]
    moved = await client.update_work_queue("B", "gap2", priority=1)
    assert moved.priority == 1
    assert await queue_order(client, "gap2") == [("B", 1), ("default", 2), ("C", 3), ("A", 4)]


async def test_queue_limits_pause_and_description(client: AsyncClient) -> None:
    await client.create_work_pool("ql", "process")
    queue = await client.create_work_queue("high", "ql", concurrency_limit=3, description="urgent")
    assert (queue.concurrency_limit, queue.description, queue.pool) == (3, "urgent", "ql")
    assert (await client.set_work_queue_concurrency_limit("high", "ql", 1)).concurrency_limit == 1
    assert not (await client.clear_work_queue_concurrency_limit("high", "ql")).HasField("concurrency_limit")
    paused = await client.pause_work_queue("high", "ql")
    assert (paused.paused, paused.status) == (True, common_pb2.PAUSED)
    resumed = await client.resume_work_queue("high", "ql")
    assert (resumed.paused, resumed.status) == (False, common_pb2.NOT_READY)
    updated = await client.update_work_queue("high", "ql", description="less urgent", concurrency_limit=4)
    assert (updated.description, updated.concurrency_limit) == ("less urgent", 4)


async def test_queue_bad_input(client: AsyncClient, db_url: str) -> None:
    await client.create_work_pool("qb", "process")
    with pytest.raises(errors.AlreadyExists, match="work queue 'default' already exists in work pool 'qb'"):
        await client.create_work_queue("default", "qb")
    with pytest.raises(errors.InvalidArgument, match="priority: must be a positive integer"):
        await client.create_work_queue("neg", "qb", priority=0)
    with pytest.raises(errors.InvalidArgument, match="concurrency_limit: must be at least 1, got -2"):
        await client.create_work_queue("neg", "qb", concurrency_limit=-2)
    with pytest.raises(errors.InvalidArgument, match="name: 'a/b' contains '/'"):
        await client.create_work_queue("a/b", "qb")
    with pytest.raises(errors.InvalidArgument, match="pool: a work pool name is required"):
        await client.create_work_queue("q", "")
    with pytest.raises(errors.NotFound, match="work queue 'nope' not found in work pool 'qb'"):
        await client.get_work_queue("nope", "qb")
    with pytest.raises(errors.FailedPrecondition, match="work queue 'default' of work pool 'qb' cannot be deleted"):
        await client.delete_work_queue("default", "qb")
    with pytest.raises(errors.InvalidArgument, match="priority: must be a positive integer"):
        await client.update_work_queue("default", "qb", priority=-1)
    assert await queue_order(client, "qb") == [("default", 1)]
    assert await count_rows(db_url, WorkQueueRow) == 1


async def test_ensure_queues_creates_missing_ones(client: AsyncClient) -> None:
    await client.create_work_pool("ens", "process")
    reply = await client.ensure_work_queues("ens", ["default", "extra"])
    assert [(q.name, q.priority) for q in reply.work_queues] == [("default", 1), ("extra", 2)]
    again = await client.ensure_work_queues("ens", ["extra"])
    assert [(q.name, q.priority) for q in again.work_queues] == [("extra", 2)]


async def test_concurrent_queue_creates_keep_priorities_unique(client: AsyncClient) -> None:
    await client.create_work_pool("race", "process")
    await asyncio.gather(*(client.create_work_queue(f"q{i}", "race") for i in range(8)))
    priorities = [p for _, p in await queue_order(client, "race")]
    assert sorted(priorities) == list(range(1, 10))


async def test_watch_streams_committed_changes(client: AsyncClient) -> None:
    await client.create_work_pool("seen", "process")
    stream = client.watch("seen", initial=True)
    kinds: list[tuple[int, str, str]] = []

    async def collect() -> None:
        async for event in stream:
            kinds.append((event.kind, event.pool.name, event.queue.name))
            if event.kind == pools_pb2.WatchEvent.SYNCED:
                synced.set()
            if event.queue.name == "later":
                return

    synced = asyncio.Event()
    task = asyncio.create_task(collect())
    await asyncio.wait_for(synced.wait(), 10)
    await client.create_work_queue("later", "seen")
    await asyncio.wait_for(task, 10)
    Event = pools_pb2.WatchEvent
    assert kinds[0] == (Event.CREATED, "seen", "")
    assert (Event.CREATED, "seen", "default") in kinds
    assert (Event.SYNCED, "", "") in kinds
    assert kinds[-1] == (Event.CREATED, "seen", "later")


async def test_watch_of_unknown_pool_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        async for _ in client.watch("ghost"):
            pass


async def test_queues_a_worker_names_fill_the_gaps_first_then_go_last(client: AsyncClient) -> None:
    await client.create_work_pool("gaps", "process")
    # No gaps: the new ones go after the largest priority, found without reading the pool's queues.
    reply = await client.ensure_work_queues("gaps", ["a", "b", "c", "a"])
    assert [(q.name, q.priority) for q in reply.work_queues] == [("a", 2), ("b", 3), ("c", 4)]
    await client.delete_work_queue("b", "gaps")
    await client.create_work_queue("far", "gaps", priority=8)
    # Gaps at 3 and 5-7: filled lowest first.
    reply = await client.ensure_work_queues("gaps", ["d", "e", "a"])
    assert [(q.name, q.priority) for q in reply.work_queues] == [("a", 2), ("d", 3), ("e", 5)]
    await client.ensure_work_queues("gaps", ["f", "g"])
    await client.create_work_queue("top", "gaps", priority=1)  # every queue moves down one
    await client.ensure_work_queues("gaps", ["h"])  # the count is kept through all of it: no gap left, so last
    assert await queue_order(client, "gaps") == [
        ("top", 1), ("default", 2), ("a", 3), ("d", 4), ("c", 5), ("e", 6), ("f", 7), ("g", 8), ("far", 9), ("h", 10)
    ]
