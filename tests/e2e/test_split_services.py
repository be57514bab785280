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
            SHIFTBOSS_SCHEDULER_ADDRESS=templates.address,  # a process without a scheduler: no runs anywhere
        )
        pools = ServerProcess(tmp_path, env, ["--service", "pools"]).start()
        try:
            assert any("serving pools on" in line for line in pools.lines)
            with Client(pools.address, timeout=10) as client:
                created = client.create_work_pool("split", "docker", concurrency_limit=2)
                assert "image" in created.base_job_template.fields["variables"].struct_value.fields["properties"].struct_value.fields
                client.create_work_queue("fast", "split", priority=1)
                assert [(q.name, q.priority) for q in client.list_work_queues("split").work_queues] == [("fast", 1), ("default", 2)]
                # No scheduler behind its address: no runs or deployments to follow a rename.
                assert client.update_work_queue("fast", "split", new_name="faster").name == "faster"
                assert client.get_work_pool("split").queues == ["faster", "default"]
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


def test_split_services_with_auth_and_tls_check_keys_across_processes(tmp_path: Path, postgres_database: str) -> None:
    """Keys live in one process; the pools process asks it who a key is, over TLS, with the
    mesh's shared token."""
    import subprocess

    from tests.certificates import make_certificates
    from tests.e2e.conftest import BIN

    certs = make_certificates(tmp_path / "certs")
    env = base_env(
        tmp_path,
        SHIFTBOSS_DATABASE_URL=postgres_database,
        SHIFTBOSS_MESH_TOKEN="shared-secret",
        SHIFTBOSS_TLS_CERT_FILE=certs.server_cert,
        SHIFTBOSS_TLS_KEY_FILE=certs.server_key,
        SHIFTBOSS_TLS_CA_FILE=certs.ca,
    )
    made = subprocess.run([str(BIN), "server", "create-admin-key", "root"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip().splitlines()[-1]
    first = ServerProcess(tmp_path, env, ["--auth", "--service", "keys", "--service", "templates"]).start()
    try:
        pools_env = {**env, "SHIFTBOSS_KEYS_ADDRESS": first.address, "SHIFTBOSS_TEMPLATES_ADDRESS": first.address}
        pools = ServerProcess(tmp_path, pools_env, ["--auth", "--service", "pools"]).start()
        try:
            from shiftboss.settings import load_settings

            trusting = load_settings(environ={"SHIFTBOSS_HOME": str(tmp_path / "cli"), "SHIFTBOSS_TLS_CA_FILE": certs.ca})
            with Client(pools.address, timeout=10, settings=trusting, api_key=admin) as client:
                assert client.create_work_pool("split", "docker").name == "split"
            with Client(first.address, timeout=10, settings=trusting, api_key=admin) as client:
                operator = client.create_api_key("ops", "operator").key
            with Client(pools.address, timeout=10, settings=trusting, api_key=operator) as client:
                assert [p.name for p in client.list_work_pools().work_pools] == ["split"]
                with pytest.raises(errors.PermissionDenied, match="CreateWorkPool needs an admin key"):
                    client.create_work_pool("other", "docker")
            with Client(pools.address, timeout=10, settings=trusting, api_key="") as client:
                with pytest.raises(errors.Unauthenticated, match="missing API key"):
                    client.list_work_pools()
        finally:
            pools.stop()
    finally:
        first.stop()


def test_a_call_for_a_service_another_process_runs_says_where_to_point(tmp_path: Path) -> None:
    """The CLI against a process without the service it calls: UNIMPLEMENTED naming the
    service and the address settings, not gRPC's bare "Method not found!"."""
    import subprocess

    from tests.e2e.conftest import BIN

    templates = ServerProcess(tmp_path, base_env(tmp_path), ["--service", "templates"]).start()
    try:
        pools = ServerProcess(
            tmp_path, base_env(tmp_path, SHIFTBOSS_TEMPLATES_ADDRESS=templates.address), ["--service", "pools"]
        ).start()
        try:

            def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
                env = base_env(tmp_path / "cli", SHIFTBOSS_API_ADDRESS=address)
                return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)

            listed = cli(templates.address, "deployment", "ls")
            assert listed.returncode == 1
            assert listed.stderr == (
                f"Error: this server ({templates.address}) does not run SchedulerService; start it with --service scheduler, "
                "and point clients at it with SHIFTBOSS_API_ADDRESS (and the other services with SHIFTBOSS_SCHEDULER_ADDRESS)\n"
            )
            # A worker's stream gets the same answer.
            worker = cli(templates.address, "worker", "start", "-p", "etl")
            assert worker.returncode == 1
            assert "does not run SchedulerService; start it with --service scheduler" in worker.stderr
            # A process that knows where the service runs says so.
            default = cli(pools.address, "work-pool", "get-default-base-job-template", "--type", "process")
            assert default.returncode == 1
            assert default.stderr == (
                f"Error: this server ({pools.address}) does not run TemplateService; it runs at {templates.address} "
                "(this server's SHIFTBOSS_TEMPLATES_ADDRESS): point SHIFTBOSS_API_ADDRESS there\n"
            )
            assert cli(templates.address, "work-pool", "get-default-base-job-template", "--type", "process").returncode == 0
        finally:
            pools.stop()
    finally:
        templates.stop()
