"""Prefect behaviour as a user sees it through real processes: job template rules reaching
the flow, and retries shown by the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from shiftboss.client import Client
from shiftboss.services.templates.builtin import default_template
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
        done = subprocess.run([str(BIN), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
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
