"""Prefect behaviour as a user sees it through real processes: job template rules reaching
the flow, and retries shown by the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shiftboss.client import Client
from shiftboss.services.templates.builtin import default_template
from shiftboss.v1 import common_pb2
from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env
from tests.waiting import wait_state

FLOW = textwrap.dedent(
    '''
    import json, os

    def boom():
        raise RuntimeError("flaky")

    def environment(out: str):
        names = ["FROM_WORKER", "UNSET_ON_WORKER", "LITERAL", "DEPLOYMENT", "RUN", "DOTTED"]
        with open(out, "w") as fh:
            json.dump({name: os.environ.get(name) for name in names}, fh)
    '''
)


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    process = ServerProcess(home, base_env(home)).start()
    yield process
    process.stop()


def test_prefect_env_var_placeholders_literal_env_and_dotted_variables_reach_the_flow(server: ServerProcess, tmp_path: Path) -> None:
    """`{{ $VAR }}` is the worker's environment (Prefect fills it on the worker); an `env`
    object written in job_configuration merges under the deployment's and the run's `env`;
    `env.X` sets one key."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "env.py").write_text(FLOW)
    template = default_template("process")
    template["job_configuration"]["env"] = {
        "FROM_WORKER": "{{ $PARITY_WORKER_SECRET }}",
        "UNSET_ON_WORKER": "x{{ $PARITY_NOT_SET }}",
        "LITERAL": "literal",
        "DEPLOYMENT": "overridden",
    }
    out = tmp_path / "env.json"
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("templated", "process", base_job_template=template)
        client.create_deployment("env", "templated", "flows/env.py:environment", job_variables={"env": {"DEPLOYMENT": "deployment"}})
        env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address, PARITY_WORKER_SECRET="s3cret")
        worker = WorkerProcess(["-p", "templated", "-n", "w-env"], tmp_path, env)
        try:
            run = client.create_flow_run(
                "env", parameters={"out": str(out)}, job_variables={"env": {"RUN": "run"}, "env.DOTTED": "dotted"}
            )
            wait_state(client, run.id, "COMPLETED")
        finally:
            code, output = worker.stop()
        assert code == 0, output
    assert json.loads(out.read_text()) == {
        "FROM_WORKER": "s3cret",
        "UNSET_ON_WORKER": "x",
        "LITERAL": "literal",
        "DEPLOYMENT": "deployment",
        "RUN": "run",
        "DOTTED": "dotted",
    }


def test_prefect_retries_a_failing_flow_runs_again_and_the_cli_shows_its_attempts(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "env.py").write_text(FLOW)
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address)

    def cli(*args: str) -> str:
        done = run_cli(env, tmp_path, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("work-pool", "create", "retrying", "--type", "process")
    cli("deployment", "create", "flaky", "--pool", "retrying", "--entrypoint", "flows/env.py:boom", "--retries", "1")
    run_id = json.loads(cli("deployment", "run", "flaky", "-o", "json"))["id"]
    worker = WorkerProcess(["-p", "retrying", "-n", "w-retry"], tmp_path, env)
    try:
        with Client(server.address, timeout=10) as client:
            wait_state(client, run_id, "FAILED")
    finally:
        code, output = worker.stop()
    assert code == 0, output
    shown = json.loads(cli("flow-run", "inspect", run_id, "-o", "json"))
    assert (shown["state"], shown["run_count"], shown["retries"]) == ("FAILED", 2, 1)
    assert [h["state"] for h in shown["history"]] == ["SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "PENDING", "RUNNING", "FAILED"]
    assert shown["history"][3]["message"].startswith("AwaitingRetry: attempt 1 of 2 FAILED: the flow exited with code 1")
    table = cli("flow-run", "inspect", run_id)
    assert re.search(r"run_count\W+2\b", table) and re.search(r"state_name\W", table)
    cli("deployment", "delete", "flaky")
    listed = cli("flow-run", "ls", "--deployment", "flaky")
    assert "Name" in listed and shown["name"] in listed and run_id in listed


def test_prefect_work_queue_rename_from_the_cli_and_its_mistakes(server: ServerProcess, tmp_path: Path) -> None:
    """`prefect work-queue update NAME --name NEW` (and the default queue too): the
    deployment and its run follow; a taken, empty or bad name is refused and changes nothing."""
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address)

    def cli(*args: str) -> dict:  # type: ignore[type-arg]
        done = run_cli(env, tmp_path, *args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def refused(*args: str) -> str:
        done = run_cli(env, tmp_path, *args)
        assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
        return done.stderr

    cli("work-pool", "create", "renames", "--type", "process")
    cli("work-queue", "create", "urgent", "--pool", "renames", "--limit", "2")
    cli("deployment", "create", "d", "--pool", "renames", "--entrypoint", "flows/f.py:f", "--queue", "urgent")
    run_id = cli("deployment", "run", "d", "--start-in", "3600")["id"]

    done = run_cli(env, tmp_path, "work-queue", "update", "urgent", "--pool", "renames", "--name", "critical")
    assert (done.returncode, done.stdout.strip()) == (0, "Updated work queue 'urgent' of pool 'renames'"), done.stderr
    queue = cli("work-queue", "inspect", "critical", "--pool", "renames")
    assert (queue["name"], queue["priority"], queue["concurrency_limit"], queue["is_default"]) == ("critical", 2, 2, False)
    assert cli("deployment", "inspect", "d")["queue"] == "critical"
    assert cli("flow-run", "inspect", run_id)["queue"] == "critical"
    assert "not found" in refused("work-queue", "inspect", "urgent", "--pool", "renames")

    assert run_cli(env, tmp_path, "work-queue", "update", "default", "-p", "renames", "--name", "main").returncode == 0
    pool = cli("work-pool", "inspect", "renames")
    assert (pool["default_queue"], pool["queues"]) == ("main", ["main", "critical"])
    assert cli("deployment", "create", "e", "--pool", "renames", "--entrypoint", "flows/f.py:f")["queue"] == "main"

    assert "Error: new_name: work queue 'critical' already exists in work pool 'renames'" in refused(
        "work-queue", "update", "main", "--pool", "renames", "--name", "critical"
    )
    assert "new_name: must not be empty" in refused("work-queue", "update", "main", "--pool", "renames", "--name", " ")
    assert "new_name: 'a/b' contains '/'" in refused("work-queue", "update", "main", "--pool", "renames", "--name", "a/b")
    assert "work queue 'gone' not found in work pool 'renames'" in refused(
        "work-queue", "update", "gone", "--pool", "renames", "--name", "x"
    )
    assert "cannot be deleted: it is the pool's default queue" in refused("work-queue", "delete", "main", "--pool", "renames")
    listed = [(q["name"], q["priority"]) for q in cli("work-queue", "ls", "--pool", "renames")]
    assert listed == [("main", 1), ("critical", 2)]


def test_prefect_work_queue_inspect_shows_late_runs_polled_served_and_status(server: ServerProcess, tmp_path: Path) -> None:
    """Prefect's work queue status in `work-queue inspect`: late runs, last polled, last
    served, and NOT_READY until a worker serves the queue, READY after."""
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address)

    def inspect() -> dict:  # type: ignore[type-arg]
        done = run_cli(env, tmp_path, "work-queue", "inspect", "q", "--pool", "health", "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert run_cli(env, tmp_path, "work-pool", "create", "health", "--type", "noop").returncode == 0
    assert run_cli(env, tmp_path, "work-queue", "create", "q", "--pool", "health").returncode == 0
    made = run_cli(env, tmp_path, "deployment", "create", "d", "--pool", "health", "--entrypoint", "flows/f.py:f", "-q", "q")
    assert made.returncode == 0, made.stderr
    past = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    run_id = json.loads(run_cli(env, tmp_path, "deployment", "run", "d", "--start-at", past, "-o", "json").stdout)["id"]
    before = inspect()
    assert (before["status"], before["late_runs"], before["last_polled"], before["last_served"]) == ("NOT_READY", 1, None, None)
    table = run_cli(env, tmp_path, "work-queue", "inspect", "q", "--pool", "health").stdout
    assert re.search(r"late_runs\W+1\b", table), table

    worker = WorkerProcess(["-p", "health", "-q", "q", "-n", "w-health", "--type", "noop"], tmp_path, env)
    try:
        with Client(server.address, timeout=10) as client:
            wait_state(client, run_id, "COMPLETED")
            deadline = time.monotonic() + 10
            while client.get_work_queue("q", "health").status != common_pb2.READY:  # marked at the worker's next beat
                assert time.monotonic() < deadline, "the queue never became READY"
                time.sleep(0.05)
        after = inspect()
    finally:
        code, output = worker.stop()
    assert code == 0, output
    assert (after["status"], after["late_runs"]) == ("READY", 0)
    assert after["last_polled"] and after["last_served"]
    assert datetime.fromisoformat(after["last_served"].replace("Z", "+00:00")) > datetime.fromisoformat(past)
