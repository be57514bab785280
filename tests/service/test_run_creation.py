"""Creating flow runs under load: deployments read in batches, job configurations rendered
once per combination of variables, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, update

from shiftboss import errors
from shiftboss._wire import from_struct, to_struct
from shiftboss.client import AsyncClient
from shiftboss.services.db import open_database, release_database
from shiftboss.services.mesh import Mesh
from shiftboss.services.scheduler.models import DeploymentRow, now_utc
from shiftboss.v1 import scheduler_pb2
from tests.service.test_scheduler import next_dispatch, worker

FLOW = "flows/hello.py:hello"


@pytest.fixture
async def pool(client: AsyncClient) -> str:
    await client.create_work_pool("pool", "process")
    return "pool"


async def test_each_run_is_rendered_with_its_own_variables(client: AsyncClient, pool: str) -> None:
    await client.create_deployment("vars", pool, FLOW, job_variables={"env": {"A": "deployment"}})

    async def env_of(**job_variables: object) -> dict[str, str]:
        run = await client.create_flow_run("vars", job_variables=job_variables or None)
        return from_struct(run.job_configuration)["env"]

    plain = await env_of()
    assert plain == {"A": "deployment"}
    assert await env_of(env={"B": "run"}) == {"A": "deployment", "B": "run"}
    assert await env_of(env={"A": "run"}) == {"A": "run"}
    assert await env_of() == plain
    for _ in range(2):  # a refusal is not remembered as a rendering
        with pytest.raises(errors.InvalidArgument, match="unknown variable 'imag'"):
            await client.create_flow_run("vars", job_variables={"imag": "python"})
    update = scheduler_pb2.UpdateDeploymentRequest(name="vars", job_variables=to_struct({"env": {"A": "changed"}}))
    await client._invoke("SchedulerService", "UpdateDeployment", update)
    assert await env_of() == {"A": "changed"}


async def test_a_new_base_job_template_reaches_the_next_runs(client: AsyncClient, pool: str) -> None:
    await client.create_deployment("hello", pool, FLOW)
    before = await client.create_flow_run("hello")
    assert "marker" not in from_struct(before.job_configuration)
    template = {
        "job_configuration": {"command": "{{ command }}", "marker": "{{ marker }}"},
        "variables": {"type": "object", "properties": {"command": {"type": "string"}, "marker": {"type": "string", "default": "v2"}}},
    }
    await client.update_work_pool(pool, base_job_template=template)
    # A worker's Hello hands the scheduler the pool as it is now, so the change has arrived.
    async with worker(client, "w", pool) as stream:
        assert (await next_dispatch(stream)).run == before.id
        after = await client.create_flow_run("hello")
        assert from_struct(after.job_configuration) == {"marker": "v2"}
        dispatch = await next_dispatch(stream)
        assert dispatch.run == after.id
        assert from_struct(dispatch.job_configuration) == {"marker": "v2"}


async def test_runs_created_at_once_each_get_their_own_deployment(client: AsyncClient, pool: str) -> None:
    for name in ("a", "b", "c"):
        await client.create_deployment(name, pool, FLOW, parameters={"who": name})
    names = ["a", "b", "ghost", "c"] * 10
    created = await asyncio.gather(*(client.create_flow_run(n) for n in names), return_exceptions=True)
    for name, result in zip(names, created):
        if name == "ghost":
            assert isinstance(result, errors.NotFound) and "deployment 'ghost' not found" in str(result)
        else:
            assert isinstance(result, scheduler_pb2.FlowRun), result
            assert (result.deployment, from_struct(result.parameters)) == (name, {"who": name})
    listed = await client.list_flow_runs(pool=pool, limit=100)
    assert sorted(r.deployment for r in listed.flow_runs) == sorted(n for n in names if n != "ghost")
    with pytest.raises(errors.InvalidArgument, match="deployment: a deployment name is required"):
        await client.create_flow_run("")


async def test_a_deployment_changed_elsewhere_is_seen_by_the_next_run(client: AsyncClient, pool: str, mesh: Mesh) -> None:
    """Another replica (here: a direct write to the table) changes or deletes the deployment;
    no run is written from the deployment as this scheduler last saw it."""
    await client.create_deployment("moving", pool, FLOW, parameters={"v": 1})
    assert from_struct((await client.create_flow_run("moving")).parameters) == {"v": 1}
    db = open_database(mesh.settings.database_url_for("scheduler"))
    try:
        async with db.transaction() as session:
            await session.execute(
                update(DeploymentRow).where(DeploymentRow.name == "moving").values(parameters={"v": 2}, updated=now_utc())
            )
        assert from_struct((await client.create_flow_run("moving")).parameters) == {"v": 2}
        async with db.transaction() as session:
            await session.execute(delete(DeploymentRow).where(DeploymentRow.name == "moving"))
        with pytest.raises(errors.NotFound, match="deployment 'moving' not found"):
            await client.create_flow_run("moving")
    finally:
        await release_database(db)
    await client.create_deployment("moving", pool, FLOW, parameters={"v": 3})
    assert from_struct((await client.create_flow_run("moving")).parameters) == {"v": 3}
    listed = await client.list_flow_runs(deployment="moving")
    assert [from_struct(r.parameters) for r in listed.flow_runs] == [{"v": 3}]  # made from the new deployment


async def test_a_create_retried_with_its_idempotency_key_makes_one_run(client: AsyncClient) -> None:
    await client.create_work_pool("keyed", "process")
    await client.create_deployment("once", "keyed", "flows/x.py:f")
    await client.create_deployment("other", "keyed", "flows/x.py:f")
    first = await client.create_flow_run("once", idempotency_key="k-1")
    again = await client.create_flow_run("once", idempotency_key="k-1")  # as a retry after a lost answer
    assert again.id == first.id
    assert (await client.run_deployment("once", idempotency_key="k-1")).id == first.id
    assert [r.id for r in (await client.list_flow_runs(deployment="once")).flow_runs] == [first.id]
    with pytest.raises(errors.FailedPrecondition, match="idempotency_key: already used for a run of another deployment"):
        await client.create_flow_run("other", idempotency_key="k-1")
    with pytest.raises(errors.InvalidArgument, match="idempotency_key: at most 128 characters"):
        await client.create_flow_run("once", idempotency_key="k" * 129)
    # The SDK makes a key per call: two calls, two runs.
    assert (await client.create_flow_run("once")).id != (await client.create_flow_run("once")).id
    assert len((await client.list_flow_runs(deployment="once")).flow_runs) == 3
