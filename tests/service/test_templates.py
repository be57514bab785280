"""TemplateService over gRPC, and PoolService refusing templates it rejects."""

from __future__ import annotations

import json

import pytest

from shiftboss import errors
from shiftboss._wire import from_struct
from shiftboss.client import AsyncClient
from tests.service.test_pools import count_rows
from shiftboss.services.pools.models import WorkPoolRow


async def test_default_template_round_trip_through_a_pool(client: AsyncClient) -> None:
    for pool_type in ("process", "docker", "kubernetes"):
        default = from_struct((await client.get_default_base_job_template(pool_type)).template)
        await client.create_work_pool(f"rt-{pool_type}", pool_type, base_job_template=default)
        rendered = from_struct((await client.render(f"rt-{pool_type}")).job_configuration)
        assert "{{" not in json.dumps(rendered)


async def test_pool_without_template_gets_its_types_default(client: AsyncClient) -> None:
    pool = await client.create_work_pool("k8s", "kubernetes")
    stored = from_struct(pool.base_job_template)
    assert stored == from_struct((await client.get_default_base_job_template("kubernetes")).template)


async def test_bad_template_is_refused_and_nothing_is_written(client: AsyncClient, db_url: str) -> None:
    bad = {"job_configuration": {"image": "{{ imag }}"}, "variables": {"type": "object", "properties": {"image": {"type": "string"}}}}
    with pytest.raises(errors.InvalidArgument, match=r"base_job_template.job_configuration.image: placeholder '\{\{ imag \}\}'"):
        await client.create_work_pool("bad", "docker", base_job_template=bad)
    assert await count_rows(db_url, WorkPoolRow) == 0
    await client.create_work_pool("good", "docker")
    with pytest.raises(errors.InvalidArgument, match="variables.type: must be 'object'"):
        await client.update_work_pool("good", base_job_template={"job_configuration": {}, "variables": {"type": "array", "properties": {}}})
    assert "image" in from_struct((await client.get_work_pool("good")).base_job_template)["variables"]["properties"]


async def test_prefect_template_whose_default_breaks_its_schema_is_refused_at_the_pool(client: AsyncClient, db_url: str) -> None:
    """Prefect accepts such a template and then fails every deployment; here the pool is
    refused, naming the variable, and nothing is written."""
    bad = {
        "job_configuration": {"retries": "{{ retries }}"},
        "variables": {"type": "object", "properties": {"retries": {"type": "integer", "default": "hi"}}},
    }
    with pytest.raises(errors.InvalidArgument, match=r"base_job_template.variables.properties.retries.default: 'hi' is not of type 'integer'"):
        await client.create_work_pool("bad", "process", base_job_template=bad)
    assert await count_rows(db_url, WorkPoolRow) == 0
    await client.create_work_pool("good", "process")
    with pytest.raises(errors.InvalidArgument, match="retries.default: 'hi' is not of type 'integer'"):
        await client.update_work_pool("good", base_job_template=bad)
    assert "retries" not in from_struct((await client.get_work_pool("good")).base_job_template)["variables"]["properties"]


async def test_render_with_deployment_and_run_variables(client: AsyncClient) -> None:
    await client.create_work_pool("r", "process")
    reply = await client.render(
        "r", deployment_variables={"env": {"A": "1"}, "name": "dep"}, run_variables={"env": {"B": "2"}, "stream_output": False}
    )
    assert from_struct(reply.job_configuration) == {"env": {"A": "1", "B": "2"}, "name": "dep", "stream_output": False}
    with pytest.raises(errors.InvalidArgument, match="unknown variable 'imag'"):
        await client.render("r", run_variables={"imag": "x"})
    with pytest.raises(errors.InvalidArgument, match="job_variables.stream_output: 'yes' is not of type 'boolean'"):
        await client.render("r", run_variables={"stream_output": "yes"})
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.render("ghost")


async def test_unknown_type_has_no_default(client: AsyncClient) -> None:
    with pytest.raises(errors.InvalidArgument, match="type: unknown work pool type 'k8s'"):
        await client.get_default_base_job_template("k8s")
