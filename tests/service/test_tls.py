"""TLS: the server speaks only TLS with a certificate; mutual TLS asks clients for theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftboss.client import AsyncClient
from shiftboss.errors import InvalidArgument, Unavailable
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.certificates import make_certificates
from tests.conftest import close_abandoned_connections


async def start(settings: Settings) -> tuple[Mesh, str]:
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1"))
    port = await mesh.start()
    return mesh, f"127.0.0.1:{port}"


async def test_tls_round_trip_through_the_mesh_and_the_worker_stream(settings: Settings, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    mesh, address = await start(settings.replace(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key))
    try:
        trusting = settings.replace(tls_ca_file=certs.ca)
        async with AsyncClient(address, timeout=10, settings=trusting) as client:
            # The pool create goes on to TemplateService over the mesh's own TLS channel.
            pool = await client.create_work_pool("etl", "process")
            assert pool.name == "etl"
            await client.create_deployment("nightly", "etl", "flows/etl.py:main")
            stream = WorkerStream(client, scheduler_pb2.Hello(name="w1", pool="etl"))
            await stream.open()
            run = await client.create_flow_run("nightly")
            message = await stream.receive(timeout=10)
            assert message is not None and message.dispatch.run == run.id
            await stream.close()
        async with AsyncClient(address, timeout=3, settings=settings) as plain:
            with pytest.raises(Unavailable):
                await plain.list_work_pools()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


async def test_mutual_tls_refuses_a_client_without_a_certificate(settings: Settings, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    mesh, address = await start(
        settings.replace(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key, tls_client_ca_file=certs.ca)
    )
    try:
        with_cert = settings.replace(tls_ca_file=certs.ca, tls_client_cert_file=certs.client_cert, tls_client_key_file=certs.client_key)
        async with AsyncClient(address, timeout=10, settings=with_cert) as client:
            assert (await client.create_work_pool("etl", "process")).name == "etl"
        async with AsyncClient(address, timeout=3, settings=settings.replace(tls_ca_file=certs.ca)) as anonymous:
            with pytest.raises(Unavailable):
                await anonymous.list_work_pools()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


async def test_unreadable_certificate_names_the_setting(settings: Settings, tmp_path: Path) -> None:
    mesh = Mesh(settings.replace(port=0, tls_cert_file=str(tmp_path / "missing.pem"), tls_key_file=str(tmp_path / "missing.key")))
    with pytest.raises(InvalidArgument, match="SHIFTBOSS_TLS_KEY_FILE: cannot read"):
        await mesh.start()
    await mesh.stop(0)
