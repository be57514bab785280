"""The server process as an operator sees it: health, reflection, migrations, shutdown."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import BIN, ServerProcess, base_env


def test_health_and_reflection_are_served(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "shiftboss.v1.PoolService", "shiftboss.v1.SchedulerService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"shiftboss.v1.PoolService", "shiftboss.v1.TemplateService", "shiftboss.v1.HeartbeatService", "shiftboss.v1.SchedulerService"} <= names


def test_sigterm_stops_gracefully_and_data_survives(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    first = ServerProcess(tmp_path, env).start()
    run = lambda *args: subprocess.run([str(BIN), *args], env={**env, "SHIFTBOSS_API_ADDRESS": first.address}, capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run("work-pool", "create", "kept", "--type", "process").returncode == 0
    assert first.stop(signal.SIGTERM) == 0
    assert (tmp_path / "shiftboss.db").exists()
    second = ServerProcess(tmp_path, env).start()
    try:
        listed = subprocess.run(
            [str(BIN), "work-pool", "inspect", "kept", "-o", "json"],
            env={**env, "SHIFTBOSS_API_ADDRESS": second.address}, capture_output=True, text=True, timeout=60,
        )
        assert listed.returncode == 0 and '"name": "kept"' in listed.stdout
    finally:
        assert second.stop(signal.SIGINT) == 0


def test_database_upgrade_command(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    done = subprocess.run([str(BIN), "server", "database", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Upgraded pools" in done.stdout and "Upgraded scheduler" in done.stdout
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "shiftboss.db").execute("select name from sqlite_master where type='table'")}
    assert {"work_pools", "work_queues", "workers", "flow_runs", "deployments", "alembic_version_pools", "alembic_version_scheduler"} <= tables
    bad = subprocess.run([str(BIN), "server", "database", "upgrade", "--service", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown service nope" in bad.stderr


def test_unknown_service_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN), "server", "start", "--service", "billing", "--port", "0"], env=base_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown service billing" in done.stderr


def test_a_database_this_version_does_not_know_stops_the_start_in_one_line(tmp_path: Path) -> None:
    """A database a newer shiftboss has migrated: the server says so and exits, before it
    listens, rather than answering every call with a missing table."""
    import sqlite3

    env = base_env(tmp_path)
    upgraded = subprocess.run([str(BIN), "server", "database", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    with sqlite3.connect(tmp_path / "shiftboss.db") as db:
        db.execute("update alembic_version_pools set version_num = '0007'")
    done = subprocess.run([str(BIN), "server", "start", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (
        f"shiftboss: the pools database (sqlite+aiosqlite:///{tmp_path / 'shiftboss.db'}) is at revision 0007, which this "
        "version of shiftboss does not know; upgrade shiftboss, or point SHIFTBOSS_DATABASE_URL (or "
        "SHIFTBOSS_POOLS_DATABASE_URL) at another database\n"
    )
    again = subprocess.run([str(BIN), "server", "database", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert again.stderr == done.stderr
