"""Limits against abuse: each is refused with the limit named, nothing is half-written,
and the server keeps serving."""

from __future__ import annotations

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shiftboss.client import AsyncClient
from shiftboss.errors import InvalidArgument, ResourceExhausted
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import pools_pb2, scheduler_pb2
from shiftboss._wire import to_struct


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[override]
    return settings.replace(max_document_bytes=2048, max_message_bytes=64 * 1024, stream_messages_per_second=50)


async def serving(mesh: Mesh) -> bool:
    async with aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_oversized_documents_are_refused_naming_the_field(mesh: Mesh, client: AsyncClient) -> None:
    await client.create_work_pool("etl", "process")
    await client.create_deployment("nightly", "etl", "flows/etl.py:main")
    big = {"blob": "x" * 4000}
    with pytest.raises(InvalidArgument, match=r"parameters: \d+ bytes is over the limit of 2048 bytes \(SHIFTBOSS_MAX_DOCUMENT_BYTES\)"):
        await client.create_flow_run("nightly", parameters=big)
    with pytest.raises(InvalidArgument, match="job_variables: .* over the limit of 2048 bytes"):
        await client.create_deployment("other", "etl", "flows/etl.py:main", job_variables=big)
    specs = [
        scheduler_pb2.DeploymentSpec(name="small", pool="etl", entrypoint="flows/a.py:a"),
        scheduler_pb2.DeploymentSpec(name="large", pool="etl", entrypoint="flows/b.py:b", parameters=to_struct(big)),
    ]
    with pytest.raises(InvalidArgument, match=r"deployments\[1\]\.parameters: .* over the limit"):
        await client.apply_deployments(specs)
    assert [d.name for d in (await client.list_deployments()).deployments] == ["nightly"]
    assert list((await client.list_flow_runs()).flow_runs) == []


async def test_a_message_over_the_size_limit_is_resource_exhausted(mesh: Mesh, client: AsyncClient) -> None:
    with pytest.raises(ResourceExhausted, match="larger than max"):
        await client.create_work_pool("etl", "process", description="d" * 100_000)
    assert list((await client.list_work_pools()).work_pools) == []
    assert await serving(mesh)


async def test_bytes_that_are_not_a_request_are_invalid_argument(mesh: Mesh, client: AsyncClient) -> None:
    channel = aio.insecure_channel(f"127.0.0.1:{mesh.port}")
    try:
        call = channel.unary_unary("/shiftboss.v1.PoolService/CreateWorkPool", request_serializer=None, response_deserializer=None)
        with pytest.raises(aio.AioRpcError) as caught:
            await call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        assert caught.value.code().name == "INVALID_ARGUMENT"
        assert "request: not a valid CreateWorkPool request message" in (caught.value.details() or "")
        stream = channel.stream_stream("/shiftboss.v1.SchedulerService/Connect", request_serializer=None, response_deserializer=None)
        call = stream(iter([b"\x0a\xff\xff\xff\xff\x0f"]), timeout=10)
        with pytest.raises(aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code().name == "INVALID_ARGUMENT"
        # Mid-stream too: after a good Hello, bad bytes end the stream with INVALID_ARGUMENT.
        assert (await client.create_work_pool("etl", "process")).name == "etl"
        hello = scheduler_pb2.WorkerMessage(hello=scheduler_pb2.Hello(name="w", pool="etl")).SerializeToString()
        call = stream(iter([hello, b"\x0a\xff\xff\xff\xff\x0f"]), timeout=10)
        assert b"etl" in (await call.read())
        with pytest.raises(aio.AioRpcError) as caught:
            while await call.read() is not aio.EOF:
                pass
        assert caught.value.code().name == "INVALID_ARGUMENT", caught.value.details()
        assert "not a valid Connect request message" in (caught.value.details() or "")
    finally:
        await channel.close()
    assert [p.name for p in (await client.list_work_pools()).work_pools] == ["etl"]


async def test_a_worker_flooding_its_stream_is_cut_off_and_others_go_on(mesh: Mesh, client: AsyncClient) -> None:
    await client.create_work_pool("etl", "process")
    flood = WorkerStream(client, scheduler_pb2.Hello(name="noisy", pool="etl"))
    # Queued behind Hello, so every write is done before the server cuts the stream: an
    # asyncio client whose write fails after the status arrives reports INTERNAL instead
    # (grpc/grpc#36066), which would make this test depend on timing.
    for _ in range(150):
        flood.heartbeat()
    await flood.open()
    with pytest.raises(ResourceExhausted, match=r"worker etl/noisy sent more than 50 messages per second \(SHIFTBOSS_STREAM_MESSAGES_PER_SECOND\)"):
        while await flood.receive(timeout=10) is not None:
            pass
    await flood.close()
    calm = WorkerStream(client, scheduler_pb2.Hello(name="calm", pool="etl"))
    assert (await calm.open()).queues == ["default"]
    await calm.close()
    assert isinstance(await client.get_work_pool("etl"), pools_pb2.WorkPool)
