"""Services in processes of their own, on PostgreSQL, reaching each other by address."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shiftboss import errors
from shiftboss.client import Client
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_url
from tests.e2e.conftest import ServerProcess, base_env


@pytest.fixture
def postgres_database() -> str:
    name = asyncio.run(create_postgres_database())
    yield postgres_url(name)
    asyncio.run(drop_postgres_database(name))


def test_pools_service_alone_on_postgres(tmp_path: Path, postgres_database: str) -> None:
    templates = ServerProcess(tmp_path, base_env(tmp_path), ["--service", "templates"]).start()
    try:
        env = base_env(
            tmp_path,
            SHIFTBOSS_DATABASE_URL=postgres_database,
            SHIFTBOSS_TEMPLATES_ADDRESS=templates.address,
        )
        pools = ServerProcess(tmp_path, env, ["--service", "pools"]).start()
        try:
            assert any("serving pools on" in line for line in pools.lines)
            with Client(pools.address, timeout=10) as client:
                created = client.create_work_pool("split", "docker", concurrency_limit=2)
                assert "image" in created.base_job_template.fields["variables"].struct_value.fields["properties"].struct_value.fields
                client.create_work_queue("fast", "split", priority=1)
                assert [(q.name, q.priority) for q in client.list_work_queues("split").work_queues] == [("fast", 1), ("default", 2)]
                with pytest.raises(errors.AlreadyExists):
                    client.create_work_pool("split", "docker")
            assert pools.stop() == 0
            # The rows are in PostgreSQL: a new pools process sees them.
            again = ServerProcess(tmp_path, env, ["--service", "pools"]).start()
            try:
                with Client(again.address, timeout=10) as client:
                    assert client.get_work_pool("split").concurrency_limit == 2
            finally:
                again.stop()
        finally:
            pools.stop()
    finally:
        templates.stop()
