"""A pool's entrypoint policy: deployments outside it are refused, runs of deployments made
before it are refused when made, and every Dispatch carries it to the launcher."""

from __future__ import annotations

import pytest

from shiftboss.client import AsyncClient
from shiftboss.errors import FailedPrecondition, InvalidArgument
from shiftboss.v1 import scheduler_pb2
from tests.raw_stream import RawStream


async def test_a_pools_allowed_entrypoints_bound_its_deployments(client: AsyncClient) -> None:
    pool = await client.create_work_pool("etl", "process", allowed_entrypoints=["etl.flows", "flows/"])
    assert list(pool.allowed_entrypoints) == ["etl.flows", "flows/"]
    await client.create_deployment("daily", "etl", "flows/daily.py:main")
    await client.create_deployment("nightly", "etl", "etl.flows.nightly:main")
    for entrypoint in ("os:system", "../flows/x.py:main", "etl:main"):
        with pytest.raises(FailedPrecondition, match=r"entrypoint: .* is not among the entrypoints work pool 'etl' allows \(etl.flows, flows/\)"):
            await client.create_deployment("bad", "etl", entrypoint)
    with pytest.raises(FailedPrecondition, match="entrypoint: 'os:system'"):
        await client.update_deployment("daily", entrypoint="os:system")
    spec = scheduler_pb2.DeploymentSpec(name="filed", pool="etl", entrypoint="json:dumps")
    with pytest.raises(FailedPrecondition, match=r"deployments\[0\].entrypoint: 'json:dumps' is not among"):
        await client.apply_deployments([spec])
    assert [d.name for d in (await client.list_deployments()).deployments] == ["daily", "nightly"]

    for patterns, message in ((["/srv/"], "folders are relative"), (["a-b"], "neither a module name"), ([" "], "an empty pattern")):
        with pytest.raises(InvalidArgument, match=f"allowed_entrypoints: .*{message}"):
            await client.update_work_pool("etl", allowed_entrypoints=patterns)

    stream = RawStream(client, scheduler_pb2.Hello(name="w", pool="etl"))
    await client.create_flow_run("daily")
    dispatch = (await stream.next_of("dispatch")).dispatch
    assert list(dispatch.allowed_entrypoints) == ["etl.flows", "flows/"]
    await stream.close()

    # Narrowed after the deployment was made: its runs are refused when made.
    await client.update_work_pool("etl", allowed_entrypoints=["etl.flows"])
    with pytest.raises(FailedPrecondition, match="entrypoint: 'flows/daily.py:main' is not among"):
        await client.create_flow_run("daily")
    cleared = await client.update_work_pool("etl", allowed_entrypoints=[])
    assert list(cleared.allowed_entrypoints) == []
    await client.create_deployment("anything", "etl", "os:system")  # each worker decides again
