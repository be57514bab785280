"""Bulk creates against a real server process: `shiftboss deployment run --count N`, its
runs run by a real worker, and the SDK's call retried through a server restart."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

from shiftboss.client import Client
from shiftboss.v1 import scheduler_pb2
from shiftboss.settings import load_settings
from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env
from tests.e2e.test_worker import free_port
from tests.waiting import wait_state

TOUCH = '''
import os

def touch(folder: str):
    with open(os.path.join(folder, os.environ["SHIFTBOSS_FLOW_RUN_ID"]), "w") as fh:
        fh.write("ran")
'''


def made(cli, deployment: str) -> list[str]:  # type: ignore[no-untyped-def]
    listed = cli("flow-run", "ls", "--deployment", deployment, "-o", "json")
    assert listed.code == 0, listed.err
    return [run["id"] for run in json.loads(listed.out)]


def test_count_makes_the_runs_in_one_call_and_a_worker_runs_each(cli, server: ServerProcess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = f"bulk-{uuid.uuid4().hex[:6]}"
    project, out = tmp_path / "project", tmp_path / "out"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "touch.py").write_text(TOUCH)
    out.mkdir()
    assert cli("work-pool", "create", pool, "--type", "process").code == 0
    name = f"{pool}-touch"
    created = cli("deployment", "create", name, "--pool", pool, "--entrypoint", "flows/touch.py:touch", "--param", f"folder={out}")
    assert created.code == 0, created.err

    five = cli("deployment", "run", name, "--count", "5")
    assert five.code == 0, five.err
    ids = five.out.split()
    assert len(set(ids)) == 5 and "Created flow runs: 5" in five.err
    as_json = cli("deployment", "run", name, "--count", "3", "-o", "json")
    assert as_json.code == 0, as_json.err
    reply = json.loads(as_json.out)
    assert reply["created"] == 3 and len(reply["ids"]) == 3
    ids += reply["ids"]
    assert sorted(made(cli, name)) == sorted(ids)

    env = base_env(tmp_path / "worker-home", SHIFTBOSS_API_ADDRESS=server.address)
    worker = WorkerProcess(["-p", pool, "-n", "bulk-worker", "-l", "4"], project, env)
    try:
        with Client(server.address, timeout=10) as client:
            for run_id in ids:
                run = wait_state(client, run_id, "COMPLETED", "FAILED", "CRASHED", timeout=60)
                assert (scheduler_pb2.RunState.Name(run.state), run.worker) == ("COMPLETED", "bulk-worker")
    finally:
        code, output = worker.stop()
    assert code == 0, output
    assert sorted(path.name for path in out.iterdir()) == sorted(ids)


def test_count_mistakes_are_refused_and_write_nothing(cli) -> None:  # type: ignore[no-untyped-def]
    pool = f"bulk-{uuid.uuid4().hex[:6]}"
    assert cli("work-pool", "create", pool, "--type", "process").code == 0
    name = f"{pool}-d"
    assert cli("deployment", "create", name, "--pool", pool, "--entrypoint", "flows/f.py:f").code == 0

    for count in ("0", "-3"):
        refused = cli("deployment", "run", name, "--count", count)
        assert refused.code == 2 and "Invalid value for '--count'" in refused.err and "x>=1" in refused.err, refused
    over = cli("deployment", "run", name, "--count", "10001")
    assert over.code == 1 and "Error: runs: at most 10,000 per request, got 10,001" in over.err, over
    ghost = cli("deployment", "run", f"{pool}-ghost", "--count", "3")
    assert ghost.code == 1 and f"runs[0].deployment: deployment '{pool}-ghost' not found" in ghost.err, ghost
    queue = cli("deployment", "run", name, "--count", "2", "-q", "nope")
    assert queue.code == 1 and f"runs[0].queue: work queue 'nope' not found in work pool '{pool}'" in queue.err, queue
    variables = cli("deployment", "run", name, "--count", "2", "--job-variables", '{"imag": 1}')
    assert variables.code == 1 and "runs[0].job_variables: run job_variables: unknown variable 'imag'" in variables.err
    watched = cli("deployment", "run", name, "--count", "2", "--watch")
    assert watched.code == 2 and "--watch follows one run" in watched.err, watched
    assert made(cli, name) == []

    # A key given is made one per run: the command run again answers the same runs.
    first = cli("deployment", "run", name, "--count", "3", "--idempotency-key", "nightly-42")
    again = cli("deployment", "run", name, "--count", "3", "--idempotency-key", "nightly-42")
    assert first.code == again.code == 0 and first.out == again.out and len(first.out.split()) == 3
    assert sorted(made(cli, name)) == sorted(first.out.split())


def test_the_sdk_retries_a_bulk_call_through_a_restart_and_makes_each_run_once(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    server = ServerProcess(home, base_env(home), ["--port", str(port)]).start()
    settings = load_settings(environ={"SHIFTBOSS_HOME": str(tmp_path / "client-home"), "SHIFTBOSS_CREATE_RETRY_SECONDS": "30"})
    try:
        with Client(server.address, timeout=10, settings=settings) as client:
            client.create_work_pool("steady", "process")
            client.create_deployment("d", "steady", "flows/f.py:f")
            assert server.stop() == 0
            answered: list[object] = []
            call = threading.Thread(target=lambda: answered.append(client.create_flow_runs([{"deployment": "d"}] * 50)))
            call.start()  # tries while nothing listens, with the same keys every time
            server = ServerProcess(home, base_env(home), ["--port", str(port)]).start()
            call.join(60)
            assert answered, "the call did not end"
            reply = answered[0]
            assert isinstance(reply, scheduler_pb2.CreateFlowRunsResponse) and len(set(reply.ids)) == 50
            assert sorted(r.id for r in client.list_flow_runs(deployment="d").flow_runs) == sorted(reply.ids)
    finally:
        server.stop()
