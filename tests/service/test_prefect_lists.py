"""List calls as Prefect's: runs of a deployment (also a deleted one), limit and offset, slot holders."""

from __future__ import annotations

import asyncio

import pytest

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.v1 import common_pb2
from tests.service.test_scheduler import next_dispatch, wait_state, worker

FLOW = "flows/hello.py:hello"


async def test_prefect_flow_run_filters_runs_of_a_deleted_deployment_limit_and_offset(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("gone", "pool", FLOW)
    made = [await client.create_flow_run("gone", start_in=3600 + i) for i in range(3)]
    for run in made[:2]:
        await client.cancel_flow_run(run.id)
    await client.delete_deployment("gone")  # its waiting run goes with it; the ended ones stay
    listed = (await client.list_flow_runs(deployment="gone")).flow_runs
    assert [r.id for r in listed] == [made[1].id, made[0].id] and listed[0].name == made[1].name
    assert [r.id for r in (await client.list_flow_runs(deployment="gone", limit=1, offset=1)).flow_runs] == [made[0].id]
    assert [r.id for r in (await client.list_flow_runs(deployment="gone", states=["CANCELLED"], offset=2)).flow_runs] == []
    with pytest.raises(errors.InvalidArgument, match="offset: must not be negative, got -2"):
        await client.list_flow_runs(offset=-2)
    with pytest.raises(errors.NotFound, match="deployment 'never' not found"):
        await client.list_flow_runs(deployment="never")


async def test_prefect_slot_holders_of_a_pool_and_a_queue(client: AsyncClient) -> None:
    """Prefect's work-pool slot holders: runs PENDING or RUNNING, with the limit they count against."""
    await client.create_work_pool("pool", "process", concurrency_limit=3)
    await client.create_work_queue("urgent", "pool", concurrency_limit=1)
    await client.create_deployment("d", "pool", FLOW)
    async with worker(client, "w", "pool") as stream:
        running = await client.create_flow_run("d")
        first = await next_dispatch(stream)
        stream.ack(first)
        stream.started(first.run, first.lease)
        await wait_state(client, running.id, "RUNNING")
        urgent = await client.create_flow_run("d", queue="urgent")
        assert (await next_dispatch(stream)).run == urgent.id
        await client.create_flow_run("d", queue="urgent")  # waits for the queue's one slot
        pool_slots = await client.list_pool_slots("pool")
        assert [r.id for r in pool_slots.flow_runs] == [running.id, urgent.id]
        assert (pool_slots.occupied, pool_slots.limit) == (2, 3)
        queue_slots = await client.list_queue_slots("urgent", "pool")
        assert ([r.id for r in queue_slots.flow_runs], queue_slots.occupied, queue_slots.limit) == ([urgent.id], 1, 1)
        await client.cancel_flow_run(running.id)  # CANCELLING: its slot is given back
        after = await client.list_pool_slots("pool", queue="default")
        assert (list(after.flow_runs), after.occupied, after.HasField("limit")) == ([], 0, False)
    with pytest.raises(errors.NotFound, match="work queue 'nope' not found"):
        await client.list_queue_slots("nope", "pool")


async def test_prefect_deployment_status_is_ready_while_a_worker_serves_its_queue(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_work_queue("other", "pool")
    made = await client.create_deployment("served", "pool", FLOW)
    assert made.status == common_pb2.NOT_READY  # the reply of a create says it too
    await client.create_deployment("unserved", "pool", FLOW, queue="other")
    assert (await client.get_deployment("served")).status == common_pb2.NOT_READY
    async with worker(client, "w", "pool", queues=["default"]):
        deadline = asyncio.get_running_loop().time() + 10
        while (await client.get_deployment("served")).status != common_pb2.READY:  # marked with the worker's next beat
            assert asyncio.get_running_loop().time() < deadline, "the deployment never became READY"
            await asyncio.sleep(0.05)
        listed = {d.name: d.status for d in (await client.list_deployments()).deployments}
        assert (await client.pause_deployment("served")).status == common_pb2.READY
        assert (await client.update_deployment("served", description="d")).status == common_pb2.READY
    assert listed == {"served": common_pb2.READY, "unserved": common_pb2.NOT_READY}


async def test_prefect_flow_run_filter_expected_start_time_after_and_before(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("d", "pool", FLOW)
    made = [await client.create_flow_run("d", start_in=600 * (i + 1)) for i in range(3)]
    middle = made[1].scheduled_start.ToJsonString()
    after = (await client.list_flow_runs(deployment="d", scheduled_after=middle)).flow_runs
    before = (await client.list_flow_runs(deployment="d", scheduled_before=middle)).flow_runs
    assert [r.id for r in after] == [made[2].id, made[1].id] and [r.id for r in before] == [made[1].id, made[0].id]
    with pytest.raises(errors.InvalidArgument, match="scheduled_after: 'soon' is not an ISO 8601 time"):
        await client.list_flow_runs(scheduled_after="soon")


async def test_prefect_limit_and_offset_on_pools_queues_and_deployments(client: AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await client.create_work_pool(name, "process")
        await client.create_deployment(f"d-{name}", "a", FLOW)
    await client.create_work_queue("second", "a")
    assert [p.name for p in (await client.list_work_pools(limit=1, offset=1)).work_pools] == ["b"]
    assert [q.name for q in (await client.list_work_queues("a", offset=1)).work_queues] == ["second"]
    assert [d.name for d in (await client.list_deployments(limit=2)).deployments] == ["d-a", "d-b"]
    with pytest.raises(errors.InvalidArgument, match="limit: must not be negative, got -1"):
        await client.list_work_pools(limit=-1)
    with pytest.raises(errors.InvalidArgument, match="offset: must not be negative, got -3"):
        await client.list_deployments(offset=-3)
