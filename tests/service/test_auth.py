"""Authentication and roles on a mesh started with auth: every RPC, every role, every pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import select

from shiftboss.client import AsyncClient
from shiftboss.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from shiftboss.services.db import open_database, release_database
from shiftboss.services.keys import domain
from shiftboss.services.keys.models import ApiKeyRow
from shiftboss.services.keys.service import create_admin_key
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import common_pb2, heartbeats_pb2, keys_pb2, pools_pb2, scheduler_pb2, templates_pb2
from tests.conftest import close_abandoned_connections

MODULES = (pools_pb2, templates_pb2, heartbeats_pb2, scheduler_pb2, keys_pb2)


def every_method() -> list[tuple[str, Any, int]]:
    found = []
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                access = method.GetOptions().Extensions[common_pb2.access]
                found.append((f"/{service.full_name}/{method.name}", method, access))
    return found


async def call_raw(channel: aio.Channel, path: str, method: Any, key: str | None) -> grpc.StatusCode:
    """Call one RPC with an empty request (a Hello for the worker stream) and the given key."""
    request_class = method.input_type._concrete_class
    reply_class = method.output_type._concrete_class
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    serialize, deserialize = request_class.SerializeToString, reply_class.FromString
    try:
        if method.client_streaming:
            hello = scheduler_pb2.WorkerMessage(hello=scheduler_pb2.Hello(name="w", pool="nowhere"))
            call = channel.stream_stream(path, request_serializer=serialize, response_deserializer=deserialize)(
                iter([hello]), metadata=metadata, timeout=10
            )
            await call.read()
            call.cancel()
        elif method.server_streaming:
            # A watch that is let in stays open with nothing to say: its deadline says so.
            call = channel.unary_stream(path, request_serializer=serialize, response_deserializer=deserialize)(
                request_class(), metadata=metadata, timeout=2
            )
            await call.read()
            call.cancel()
        else:
            await channel.unary_unary(path, request_serializer=serialize, response_deserializer=deserialize)(
                request_class(), metadata=metadata, timeout=10
            )
    except aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def client_for(mesh: Mesh, key: str) -> AsyncClient:
    return AsyncClient(mesh.settings.api_address, timeout=10, api_key=key)


async def test_every_rpc_refuses_a_call_without_a_key(secured: Mesh) -> None:
    channel = aio.insecure_channel(secured.settings.api_address)
    try:
        for path, method, _ in every_method():
            assert await call_raw(channel, path, method, None) == grpc.StatusCode.UNAUTHENTICATED, path
        # Probes carry no key: the health check answers anyone.
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()


async def test_missing_and_bad_keys_say_which_without_telling_which_keys_exist(secured: Mesh, admin: AsyncClient) -> None:
    async with AsyncClient(secured.settings.api_address, timeout=10, api_key="") as anonymous:
        with pytest.raises(Unauthenticated, match="missing API key"):
            await anonymous.list_work_pools()
    real = (await admin.create_api_key("ops", "operator")).key
    key_id = real.split("_")[1]
    unknown_id = "sb_0000000000000000_" + real.split("_", 2)[2]
    wrong_secret = f"sb_{key_id}_not-the-secret"
    messages = []
    for bad in (unknown_id, wrong_secret, "not-a-key"):
        async with await client_for(secured, bad) as client:
            with pytest.raises(Unauthenticated) as caught:
                await client.list_work_pools()
            messages.append(caught.value.message)
    assert len(set(messages)) == 1 and "invalid API key" in messages[0]


async def test_operator_manages_runs_but_not_pools_keys_or_templates(secured: Mesh, admin: AsyncClient) -> None:
    await admin.create_work_pool("etl", "process")
    operator_key = (await admin.create_api_key("ops", "operator")).key
    async with await client_for(secured, operator_key) as operator:
        await operator.create_deployment("nightly", "etl", "flows/etl.py:main")
        run = await operator.create_flow_run("nightly")
        assert run.pool == "etl"
        assert [p.name for p in (await operator.list_work_pools()).work_pools] == ["etl"]
        with pytest.raises(PermissionDenied, match="role operator; CreateWorkPool needs an admin key"):
            await operator.create_work_pool("other", "process")
        with pytest.raises(PermissionDenied, match="CreateApiKey needs an admin key"):
            await operator.create_api_key("mine", "admin")
        with pytest.raises(PermissionDenied, match="PauseWorkQueue needs an admin key"):
            await operator.pause_work_queue("default", "etl")
    assert [p.name for p in (await admin.list_work_pools()).work_pools] == ["etl"]


async def test_each_role_reaches_exactly_the_rpcs_its_access_allows(secured: Mesh, admin: AsyncClient) -> None:
    keys = {
        "OPERATOR": (await admin.create_api_key("ops", "operator")).key,
        "WORKER": (await admin.create_api_key("bot", "worker", pool="etl")).key,
    }
    allowed = {"OPERATOR": {common_pb2.ACCESS_OPERATOR}, "WORKER": {common_pb2.ACCESS_WORKER}}
    channel = aio.insecure_channel(secured.settings.api_address)
    try:
        for role, key in keys.items():
            for path, method, access in every_method():
                code = await call_raw(channel, path, method, key)
                if access in allowed[role]:
                    assert code != grpc.StatusCode.PERMISSION_DENIED or path.endswith("/Connect"), (role, path)
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (role, path, code)
        # Calls between the mesh's services are for the mesh alone, even for an admin key.
        admin_key = admin.metadata[0][1].split(" ", 1)[1]
        for path, method, access in every_method():
            if access == common_pb2.ACCESS_MESH:
                assert await call_raw(channel, path, method, admin_key) == grpc.StatusCode.PERMISSION_DENIED, path
    finally:
        await channel.close()


async def test_worker_key_serves_its_own_pool_only(secured: Mesh, admin: AsyncClient) -> None:
    await admin.create_work_pool("etl", "process")
    await admin.create_work_pool("ml", "process")
    key = (await admin.create_api_key("bot", "worker", pool="etl")).key
    async with await client_for(secured, key) as worker:
        stream = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="etl"))
        welcome = await stream.open()
        assert welcome.pool_type == "process"
        await stream.close()

        foreign = WorkerStream(worker, scheduler_pb2.Hello(name="w2", pool="ml"))
        with pytest.raises(PermissionDenied, match="bound to work pool 'etl' and may not serve 'ml'"):
            await foreign.open()
        await foreign.close()
        with pytest.raises(PermissionDenied, match="role worker; ListFlowRuns needs an operator or admin key"):
            await worker.list_flow_runs()
    workers = (await admin.list_workers("ml")).workers
    assert workers == []


async def test_worker_key_cannot_create_its_missing_pool(secured: Mesh, admin: AsyncClient) -> None:
    key = (await admin.create_api_key("bot", "worker", pool="fresh")).key
    async with await client_for(secured, key) as worker:
        stream = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="fresh", type="process"))
        with pytest.raises(NotFound, match="worker key 'bot' cannot create it: ask an admin"):
            await stream.open()
        await stream.close()
    assert list((await admin.list_work_pools()).work_pools) == []
    # With the pool made by an admin, the same worker connects.
    await admin.create_work_pool("fresh", "process")
    async with await client_for(secured, key) as worker:
        stream = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="fresh", type="process"))
        assert (await stream.open()).pool_type == "process"
        await stream.close()


async def test_worker_log_lines_reach_only_its_own_runs(secured: Mesh, admin: AsyncClient) -> None:
    await admin.create_work_pool("etl", "process")
    await admin.create_deployment("nightly", "etl", "flows/etl.py:main")
    key = (await admin.create_api_key("bot", "worker", pool="etl")).key
    other = await admin.create_flow_run("nightly", start_in=3600)  # not dispatched: nobody's run
    async with await client_for(secured, key) as worker:
        stream = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="etl"))
        await stream.open()
        mine = await admin.create_flow_run("nightly")
        dispatched = await stream.receive(timeout=10)
        assert dispatched is not None and dispatched.dispatch.run == mine.id
        lines = [scheduler_pb2.LogLine(run=run, stream="stdout", text=f"hello {run}") for run in (other.id, mine.id, "nope")]
        stream.send(scheduler_pb2.WorkerMessage(logs=scheduler_pb2.LogBatch(lines=lines)))
        stream.finished(mine.id, dispatched.dispatch.lease, "COMPLETED", exit_code=0)
        while (message := await stream.receive(timeout=10)) is not None and message.WhichOneof("kind") != "settled":
            pass
        await stream.close()
    assert [line.text for line in [l async for l in admin.flow_run_logs(mine.id)]] == [f"hello {mine.id}"]
    assert [l async for l in admin.flow_run_logs(other.id)] == []


async def test_revoked_key_stops_at_once_and_expired_key_is_refused(secured: Mesh, admin: AsyncClient) -> None:
    key = (await admin.create_api_key("ops", "operator")).key
    async with await client_for(secured, key) as operator:
        await operator.list_work_pools()
        revoked = await admin.revoke_api_key("ops")
        assert revoked.HasField("revoked")
        with pytest.raises(Unauthenticated, match="API key 'ops' was revoked"):
            await operator.list_work_pools()
    # A key whose expiry passed: made as if a day ago, valid for an hour.
    db = open_database(secured.settings.database_url_for("keys"))
    try:
        async with db.transaction() as session:
            _, old = await domain.create_key(session, "old", "OPERATOR", "", 1 / 24, datetime.now(timezone.utc) - timedelta(days=1))
    finally:
        await release_database(db)
    async with await client_for(secured, old) as expired:
        with pytest.raises(Unauthenticated, match="API key 'old' expired at"):
            await expired.list_work_pools()


async def test_a_revoked_key_ends_its_open_worker_stream(settings: Settings) -> None:
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1", auth=True, auth_cache_seconds=0.2))
    port = await mesh.start()
    address = f"127.0.0.1:{port}"
    try:
        root = await create_admin_key(mesh.settings, "root")
        async with AsyncClient(address, timeout=10, api_key=root) as admin:
            await admin.create_work_pool("etl", "process")
            key = (await admin.create_api_key("bot", "worker", pool="etl")).key
            async with AsyncClient(address, timeout=10, api_key=key) as worker:
                stream = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="etl"))
                await stream.open()
                await admin.revoke_api_key("bot")
                # The stream ends within a cache period, saying why; a reconnect is refused.
                with pytest.raises(Unauthenticated, match="API key 'bot' was revoked"):
                    await stream.receive(timeout=10)
                await stream.close()
                again = WorkerStream(worker, scheduler_pb2.Hello(name="w1", pool="etl"))
                with pytest.raises(Unauthenticated, match="API key 'bot' was revoked"):
                    await again.open()
                await again.close()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


async def test_key_requests_are_checked_and_only_a_salted_hash_is_stored(secured: Mesh, admin: AsyncClient) -> None:
    with pytest.raises(InvalidArgument, match="pool: a worker key must name the pool"):
        await admin.create_api_key("bot", "worker")
    with pytest.raises(InvalidArgument, match="pool: only a worker key is bound to a pool"):
        await admin.create_api_key("ops", "operator", pool="etl")
    with pytest.raises(InvalidArgument, match="expires_in: -1 days"):
        await admin.create_api_key("ops", "operator", expires_in_days=-1)
    with pytest.raises(InvalidArgument, match="name: must not be empty"):
        await admin.create_api_key("", "operator")
    with pytest.raises(InvalidArgument, match="role: must be one of"):
        await admin.create_api_key("ops", "owner")
    created = await admin.create_api_key("ops", "operator", expires_in_days=30)
    with pytest.raises(AlreadyExists, match="API key 'ops' already exists"):
        await admin.create_api_key("ops", "operator")
    with pytest.raises(NotFound, match="API key 'nope' not found"):
        await admin.revoke_api_key("nope")
    listed = {k.name: k for k in (await admin.list_api_keys()).api_keys}
    assert set(listed) == {"root", "ops"} and all(k.key == "" for k in listed.values())
    assert listed["ops"].HasField("expires")

    secret = created.key.split("_", 2)[2]
    db = open_database(secured.settings.database_url_for("keys"))
    try:
        async with db.reading() as session:
            rows = (await session.execute(select(ApiKeyRow))).scalars().all()
    finally:
        await release_database(db)
    stored = " ".join(str(value) for row in rows for value in vars(row).values())
    assert secret not in stored and created.key not in stored
    # Revoking frees the name.
    await admin.revoke_api_key("ops")
    assert (await admin.create_api_key("ops", "operator")).key != created.key


async def test_split_services_with_auth_need_a_shared_mesh_token(settings: Settings) -> None:
    with pytest.raises(ValueError, match="SHIFTBOSS_MESH_TOKEN must be set"):
        Mesh(settings.replace(auth=True), ["scheduler"])
    Mesh(settings.replace(auth=True, mesh_token="shared"), ["scheduler"])


async def test_exposed_address_without_auth_or_tls_is_refused_unless_insecure(settings: Settings) -> None:
    exposed = Mesh(settings.replace(port=0, host="0.0.0.0"))
    with pytest.raises(OSError, match="refusing to serve 0.0.0.0 with neither auth nor client certificates"):
        await exposed.start()
    await exposed.stop(0)
    for allowed in (settings.replace(port=0, host="0.0.0.0", insecure=True), settings.replace(port=0, host="0.0.0.0", auth=True)):
        mesh = Mesh(allowed)
        assert await mesh.start() > 0
        await mesh.stop(0)
    await close_abandoned_connections()
