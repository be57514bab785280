"""SQLite serves one scheduler: a second server on the same file refuses to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import BIN, ServerProcess, base_env


def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    first = ServerProcess(tmp_path, env).start()
    try:
        second = subprocess.run(
            [str(BIN), "server", "start", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        database = (tmp_path / "shiftboss.db").resolve()
        assert lines[0] == (
            f"Error: another shiftboss server (pid {first.proc.pid}) is running on the SQLite database {database}: "
            "SQLite serves one server at a time; stop that one, or give every server the same PostgreSQL database "
            "(SHIFTBOSS_DATABASE_URL) to run several"
        )
    finally:
        assert first.stop() == 0
    # The lock goes with the server: the next one starts.
    again = ServerProcess(tmp_path, env).start()
    assert again.port
    again.stop()


def test_the_lock_goes_with_a_killed_server(tmp_path: Path) -> None:
    import signal

    env = base_env(tmp_path)
    ServerProcess(tmp_path, env).start().stop(signal.SIGKILL)
    again = ServerProcess(tmp_path, env).start()  # raises if it does not start
    assert again.port
    again.stop()


def test_services_apart_from_the_scheduler_share_the_file(tmp_path: Path) -> None:
    """Only a scheduler takes the lock: a pools process beside a whole server is a split, not a replica."""
    env = base_env(tmp_path)
    whole = ServerProcess(tmp_path, env).start()
    try:
        pools = ServerProcess(tmp_path, base_env(tmp_path, SHIFTBOSS_TEMPLATES_ADDRESS=whole.address), ["--service", "pools"]).start()
        assert pools.stop() == 0
    finally:
        whole.stop()
