"""What guards every call before and around the servicer: one authorization header, checked
before the request's body is read; connections that carry nothing closed; values no
database stores refused by name; and a database failure answered by what it means, never
UNKNOWN and never with its SQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.services.db import open_database, release_database
from shiftboss.services.db_errors import database_error
from shiftboss.services.keys.service import create_admin_key
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.v1 import pools_pb2, scheduler_pb2
from tests.conftest import close_abandoned_connections, running_mesh
from tests.raw_stream import RawStream

CREATE_POOL = "/shiftboss.v1.PoolService/CreateWorkPool"


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[Mesh]:
    """With auth, and a 1 MiB message limit to tell a read request from an unread one."""
    async with running_mesh(settings.replace(auth=True, max_message_bytes=1 << 20)) as mesh:
        yield mesh


@pytest.fixture
async def admin_key(secured: Mesh) -> str:
    return await create_admin_key(secured.settings, "root")


async def create_pool(address: str, request: pools_pb2.CreateWorkPoolRequest, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    async with aio.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        call = channel.unary_unary(CREATE_POOL, request_serializer=pools_pb2.CreateWorkPoolRequest.SerializeToString,
                                   response_deserializer=pools_pb2.WorkPool.FromString)
        try:
            await call(request, metadata=metadata, timeout=10)
        except aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_more_than_one_authorization_header_is_unauthenticated(secured: Mesh, admin_key: str) -> None:
    doubled = (("authorization", "Bearer "), ("authorization", f"Bearer {admin_key}"))
    async with AsyncClient(secured.settings.api_address, timeout=10) as client:
        client.metadata = doubled
        with pytest.raises(errors.Unauthenticated, match="more than one authorization header"):
            await client.list_work_pools()
        stream = RawStream(client, scheduler_pb2.Hello(name="w", pool="etl"))
        with pytest.raises(aio.AioRpcError) as caught:
            await stream.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "more than one authorization header" in caught.value.details()
        await stream.close()
        client.metadata = doubled[1:]  # the same key, once, is fine
        assert list((await client.list_work_pools()).work_pools) == []


async def test_a_call_without_a_good_key_is_refused_before_its_body_is_read(secured: Mesh, admin_key: str) -> None:
    big = pools_pb2.CreateWorkPoolRequest(name="big", type="process", description="x" * (2 << 20))
    address = secured.settings.api_address
    # A body over the server's limit: read, it would be RESOURCE_EXHAUSTED; unread, the missing key answers.
    assert await create_pool(address, big, ()) == grpc.StatusCode.UNAUTHENTICATED
    assert await create_pool(address, big, (("authorization", "Bearer sb_0_nope"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert await create_pool(address, big, (("authorization", f"Bearer {admin_key}"),)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A stream whose first message never comes is answered all the same.
    async with AsyncClient(address, timeout=10) as anonymous:
        silent = RawStream(anonymous, None)
        with pytest.raises(aio.AioRpcError) as caught:
            await silent.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await silent.close()


async def test_an_idle_connection_is_closed(settings: Settings) -> None:
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1", idle_connection_seconds=0.3))
    port = await mesh.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            # The server's GOAWAY takes the channel from READY back to IDLE.
            await asyncio.wait_for(channel.wait_for_state_change(grpc.ChannelConnectivity.READY), 10)
            assert channel.get_state() == grpc.ChannelConnectivity.IDLE
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.create_work_pool("etl", "process", description="a\x00b"), "description: holds a NUL character"),
        (lambda c: c.create_flow_run("job", parameters={"n": float("nan")}), "parameters.n: must be a finite number"),
        (lambda c: c.create_flow_run("job", parameters={"deep": [1, {"x": float("inf")}]}), "parameters.deep[1].x: must be a finite"),
        (lambda c: c.create_deployment("d", "etl", "f.py:f", interval=float("inf")), "interval: must be a finite number"),
        (lambda c: c.set_flow_run_state("00000000-0000-0000-0000-000000000000", "CANCELLED", message="\x00"), "message: holds a NUL"),
    ],
    ids=["nul-description", "nan-parameter", "infinite-nested", "infinite-interval", "nul-state-message"],
)
async def test_values_no_database_stores_are_refused_by_name(client: AsyncClient, call, error: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.InvalidArgument) as caught:
        await call(client)
    assert caught.value.message.startswith(error)


async def test_a_database_failure_means_something_and_shows_no_sql(settings: Settings, backend: str) -> None:
    db = open_database(settings.database_url_for("pools"))
    try:
        await db.upgrade("pools")
        insert = text(
            "INSERT INTO work_pools (id, name, type, description, paused, base_job_template, created, updated, "
            "worker_queue_limit, queue_count) VALUES (:id, :name, 'process', 'secret words', false, '{}', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 1)"
        )
        async with db.transaction() as session:
            await session.execute(insert, {"id": "1", "name": "etl"})
        failures: list[DBAPIError] = []
        bad = [{"id": "2", "name": "etl"}]  # a second pool of the same name
        if backend == "postgres":
            bad.append({"id": "3", "name": "x" * 300})  # longer than its column
        for params in bad:
            with pytest.raises(DBAPIError) as caught:
                async with db.transaction() as session:
                    await session.execute(insert, params)
            failures.append(caught.value)
    finally:
        await release_database(db)
    mapped = [database_error(failure) for failure in failures]
    assert [type(error) for error in mapped] == [errors.FailedPrecondition, errors.InvalidArgument][: len(mapped)]
    for error in mapped:
        assert error is not None and "INSERT" not in error.message and "secret" not in error.message and "x" * 20 not in error.message
    assert isinstance(database_error(OSError("connection refused")), errors.Unavailable)
    assert database_error(ValueError("not the database")) is None


async def test_auth_on_an_exposed_address_without_tls_warns(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        caplog.clear()
        mesh = Mesh(settings.replace(port=0, host=host, auth=True))
        with caplog.at_level(logging.WARNING, logger="shiftboss.server"):
            assert await mesh.start() > 0
        await mesh.stop(0)
        assert any("without TLS: API keys cross the network in clear text" in r.message for r in caplog.records) == warned
    await close_abandoned_connections()
