"""CreateFlowRuns: many runs in one call, all or none, an idempotency key per run, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from shiftboss import errors
from shiftboss._wire import from_struct
from shiftboss.client import AsyncClient, NewFlowRun
from shiftboss.services.db import open_database, release_database
from shiftboss.services.mesh import Mesh
from shiftboss.services.scheduler.bulk import MAX_RUNS
from shiftboss.services.scheduler.models import DeploymentRow, now_utc
from shiftboss.v1 import scheduler_pb2
from tests.service.test_scheduler import next_dispatch, nothing_dispatched, worker

FLOW = "flows/hello.py:hello"


@pytest.fixture
async def pool(client: AsyncClient) -> str:
    await client.create_work_pool("pool", "process")
    await client.create_work_queue("urgent", "pool", priority=1)
    await client.create_deployment("hello", "pool", FLOW, parameters={"name": "world"})
    await client.create_deployment("other", "pool", FLOW)
    return "pool"


async def stored(client: AsyncClient, pool: str) -> list[scheduler_pb2.FlowRun]:
    return list((await client.list_flow_runs(pool=pool, limit=1000)).flow_runs)


async def test_runs_are_made_in_order_each_as_its_item_says(client: AsyncClient, pool: str) -> None:
    runs: list[NewFlowRun] = [
        {"deployment": "hello", "parameters": {"name": "a"}},
        {"deployment": "other", "queue": "urgent", "retries": 2},
        {"deployment": "hello", "start_in": 3600, "job_variables": {"env": {"A": "1"}}},
        {"deployment": "hello"},
    ]
    reply = await client.create_flow_runs(runs)
    assert reply.created == 4 and len(set(reply.ids)) == 4
    made = [await client.get_flow_run(run_id) for run_id in reply.ids]
    assert [(r.deployment, r.queue) for r in made] == [("hello", "default"), ("other", "urgent"), ("hello", "default"), ("hello", "default")]
    assert from_struct(made[0].parameters) == {"name": "a"} and from_struct(made[3].parameters) == {"name": "world"}
    assert made[1].retries == 2
    assert from_struct(made[2].job_configuration)["env"] == {"A": "1"}
    assert made[2].scheduled_start.ToSeconds() - made[3].scheduled_start.ToSeconds() >= 3590
    assert {r.id for r in await stored(client, pool)} == set(reply.ids)


@pytest.mark.parametrize(
    "bad, code, message",
    [
        ({"deployment": "ghost"}, errors.NotFound, "runs[2].deployment: deployment 'ghost' not found"),
        ({"deployment": ""}, errors.InvalidArgument, "runs[2].deployment: a deployment name is required"),
        ({"deployment": "hello", "queue": "nope"}, errors.NotFound, "runs[2].queue: work queue 'nope' not found in work pool 'pool'"),
        ({"deployment": "hello", "job_variables": {"imag": 1}}, errors.InvalidArgument, "runs[2].job_variables: run job_variables: unknown variable 'imag'"),
        ({"deployment": "hello", "start_in": -1}, errors.InvalidArgument, "runs[2].start_in: must be between 0 and"),
        ({"deployment": "hello", "retries": -2}, errors.InvalidArgument, "runs[2].retries: must be between 0 and 1000, got -2"),
        ({"deployment": "hello", "idempotency_key": "k" * 129}, errors.InvalidArgument, "runs[2].idempotency_key: at most 128 characters"),
        ({"deployment": "hello", "parameters": {"x": "y" * 1_100_000}}, errors.InvalidArgument, "runs[2].parameters: 1100015 bytes is over the limit"),
    ],
)
async def test_one_bad_run_writes_none_and_is_named(
    client: AsyncClient, pool: str, bad: NewFlowRun, code: type[errors.ShiftbossError], message: str
) -> None:
    good: NewFlowRun = {"deployment": "hello"}
    with pytest.raises(code) as refused:
        await client.create_flow_runs([good, {"deployment": "other"}, bad, good])
    assert str(refused.value).startswith(message), refused.value
    assert await stored(client, pool) == []


async def test_a_key_that_made_a_run_of_another_deployment_writes_none(client: AsyncClient, pool: str) -> None:
    taken = await client.create_flow_run("other", idempotency_key="taken")
    with pytest.raises(errors.FailedPrecondition, match=r"runs\[1\]\.idempotency_key: already used for a run of another deployment"):
        await client.create_flow_runs([{"deployment": "hello"}, {"deployment": "hello", "idempotency_key": "taken"}])
    assert [r.id for r in await stored(client, pool)] == [taken.id]


async def test_a_retried_call_answers_the_runs_the_first_made(client: AsyncClient, pool: str) -> None:
    first = await client.create_flow_runs([{"deployment": "hello", "idempotency_key": f"k{i}"} for i in range(3)])
    again = await client.create_flow_runs([{"deployment": "hello", "idempotency_key": f"k{i}"} for i in range(3)])
    assert list(again.ids) == list(first.ids) and again.created == 0
    # Keys of a single create count too, and new keys beside old ones make only the new runs.
    single = await client.create_flow_run("hello", idempotency_key="one")
    mixed = await client.create_flow_runs(
        [{"deployment": "hello", "idempotency_key": k} for k in ("k2", "fresh", "one")]
    )
    assert mixed.created == 1
    assert mixed.ids[0] == first.ids[2] and mixed.ids[2] == single.id and mixed.ids[1] not in first.ids
    assert len(await stored(client, pool)) == 5
    with pytest.raises(errors.InvalidArgument, match=r"runs\[2\]\.idempotency_key: 'same' is also the key of runs\[0\]"):
        await client.create_flow_runs([{"deployment": "hello", "idempotency_key": k} for k in ("same", "x", "same")])
    # The SDK gives each run a key of its own: two calls, two sets of runs.
    plain = [await client.create_flow_runs([{"deployment": "hello"}] * 2) for _ in range(2)]
    assert len({*plain[0].ids, *plain[1].ids}) == 4
    assert len(await stored(client, pool)) == 9


async def test_the_sdk_sends_its_keys_again_after_an_outage(client: AsyncClient, pool: str) -> None:
    """A call whose answer is lost is sent again with the same keys (as `_invoke` retries it)."""
    request = scheduler_pb2.CreateFlowRunsRequest(runs=[scheduler_pb2.CreateFlowRunRequest(deployment="hello")] * 3)
    first = await client._invoke("SchedulerService", "CreateFlowRuns", request)
    assert all(run.idempotency_key for run in request.runs)  # made once, kept in the request for its tries
    again = await client._invoke("SchedulerService", "CreateFlowRuns", request)
    assert list(again.ids) == list(first.ids) and again.created == 0


async def test_how_many_runs_a_call_may_make(client: AsyncClient, pool: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="^runs: give at least one run$"):
        await client.create_flow_runs([])
    with pytest.raises(errors.InvalidArgument, match=f"^runs: at most {MAX_RUNS:,} per request, got {MAX_RUNS + 1:,}$"):
        await client.create_flow_runs([{"deployment": "hello"}] * (MAX_RUNS + 1))
    assert await stored(client, pool) == []
    most = await client.create_flow_runs([{"deployment": "hello"}] * MAX_RUNS)
    assert most.created == MAX_RUNS == len(set(most.ids))
    usage = await client._invoke("SchedulerService", "GetPoolUsage", scheduler_pb2.PoolUsageRequest(pool=pool))
    assert usage.waiting == MAX_RUNS


async def test_runs_reach_a_worker_in_waterfall_order_within_the_limits(client: AsyncClient, pool: str) -> None:
    await client.set_work_pool_concurrency_limit(pool, 3)
    await client.set_work_queue_concurrency_limit("urgent", pool, 1)
    reply = await client.create_flow_runs(
        [{"deployment": "hello"}] * 4 + [{"deployment": "other", "queue": "urgent"}] * 2
    )
    default, urgent = list(reply.ids[:4]), list(reply.ids[4:])
    async with worker(client, "w", pool) as stream:
        got = [await next_dispatch(stream) for _ in range(3)]
        # The urgent queue first, one at a time; the pool's limit stops the rest.
        assert [d.run for d in got] == [urgent[0], default[0], default[1]]
        await nothing_dispatched(stream)
        for d in got:
            stream.ack(d)
            stream.started(d.run, d.lease)
        stream.finished(got[0].run, got[0].lease, "COMPLETED", exit_code=0)
        assert (await next_dispatch(stream)).run == urgent[1]
        await nothing_dispatched(stream)
        for d in got[1:]:
            stream.finished(d.run, d.lease, "COMPLETED", exit_code=0)
        rest = [await next_dispatch(stream) for _ in range(2)]
        assert [d.run for d in rest] == default[2:]


async def test_bulk_and_single_creates_at_once(client: AsyncClient, pool: str) -> None:
    """A bulk call beside single creates of the same deployment: each gets its runs."""
    bulk, *singles = await asyncio.gather(
        client.create_flow_runs([{"deployment": "hello"}] * 200), *(client.create_flow_run("hello") for _ in range(20))
    )
    assert len(bulk.ids) == 200
    assert {r.id for r in await stored(client, pool)} == {*bulk.ids, *(s.id for s in singles)}


async def test_two_calls_with_the_same_keys_at_once_make_each_run_once(client: AsyncClient, pool: str) -> None:
    runs: list[NewFlowRun] = [{"deployment": "hello", "idempotency_key": f"race-{i}"} for i in range(300)]
    first, second = await asyncio.gather(client.create_flow_runs(runs), client.create_flow_runs(runs))
    assert list(first.ids) == list(second.ids)
    assert first.created + second.created == 300
    assert len(await stored(client, pool)) == 300


async def test_runs_are_made_from_the_deployment_as_it_is_when_they_are_written(
    client: AsyncClient, pool: str, mesh: Mesh
) -> None:
    """Another replica (here: a direct write) changes the deployment after this scheduler read
    it: the call notices at its insert and makes every run again from the deployment as it is."""
    await client.create_flow_runs([{"deployment": "hello"}])  # the deployment is kept from now on
    db = open_database(mesh.settings.database_url_for("scheduler"))
    try:
        async with db.transaction() as session:
            await session.execute(
                update(DeploymentRow).where(DeploymentRow.name == "hello").values(parameters={"name": "changed"}, updated=now_utc())
            )
    finally:
        await release_database(db)
    reply = await client.create_flow_runs([{"deployment": "hello"}] * 3)
    assert [from_struct((await client.get_flow_run(i)).parameters) for i in reply.ids] == [{"name": "changed"}] * 3
