"""Creating flow runs under load: deployments read in batches, job configurations rendered
once per combination of variables, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from shiftboss import errors
from shiftboss._wire import from_struct, to_struct
from shiftboss.client import AsyncClient
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
