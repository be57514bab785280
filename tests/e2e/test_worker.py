"""`shiftboss worker start` as a real process, running real flow processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from shiftboss.client import Client
from tests.e2e.conftest import BIN, ServerProcess, base_env

FLOWS = textwrap.dedent(
    '''
    import json, os, sys, time

    def record(out: str, value: int, label: str = "x"):
        with open(out, "w") as fh:
            json.dump({"value": value, "label": label, "run": os.environ["SHIFTBOSS_FLOW_RUN_ID"], "pid": os.getpid()}, fh)
        print(f"recorded {value}", flush=True)

    def boom():
        print("about to fail", flush=True)
        raise RuntimeError("the flow broke")

    def sleepy(out: str):
        with open(out, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(60)

    async def coro(out: str):
        with open(out, "w") as fh:
            fh.write("async ok")
    '''
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "jobs.py").write_text(FLOWS)
    return tmp_path


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    process = ServerProcess(home, base_env(home, SHIFTBOSS_HEARTBEAT_SECONDS="1")).start()
    yield process
    process.stop()


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_worker(server: ServerProcess, project: Path, *args: str) -> subprocess.Popen[str]:
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_WORKER_GRACE_SECONDS="5")
    return subprocess.Popen([str(BIN), "worker", "start", *args], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def state_of(client: Client, run_id: str) -> str:
    from shiftboss.v1 import scheduler_pb2

    return scheduler_pb2.RunState.Name(client.get_flow_run(run_id).state)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runs_complete_fail_and_cancel(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("local", "process")
        client.create_deployment("record", "local", "flows/jobs.py:record", parameters={"label": "deployed"})
        client.create_deployment("boom", "local", "flows/jobs.py:boom")
        client.create_deployment("sleepy", "local", "flows/jobs.py:sleepy")
        client.create_deployment("coro", "local", "flows/jobs.py:coro")
        worker = start_worker(server, project, "-p", "local", "-n", "w1")
        try:
            out = project / "out.json"
            ok = client.create_flow_run("record", parameters={"out": str(out), "value": 7})
            wait_for(lambda: state_of(client, ok.id) == "COMPLETED", what="the run to complete")
            assert json.loads(out.read_text()) == {"value": 7, "label": "deployed", "run": ok.id, "pid": json.loads(out.read_text())["pid"]}
            assert client.get_flow_run(ok.id).exit_code == 0
            assert any("recorded 7" in line.text for line in client.flow_run_logs(ok.id))

            bad = client.create_flow_run("boom")
            wait_for(lambda: state_of(client, bad.id) == "FAILED", what="the failing run")
            logs = "\n".join(line.text for line in client.flow_run_logs(bad.id))
            assert "RuntimeError: the flow broke" in logs and "Traceback" in logs

            missing = client.create_flow_run("record", parameters={"value": 1})
            wait_for(lambda: state_of(client, missing.id) == "FAILED", what="the run missing a parameter")
            assert "missing parameter out" in "\n".join(line.text for line in client.flow_run_logs(missing.id))

            async_out = project / "async.txt"
            coro = client.create_flow_run("coro", parameters={"out": str(async_out)})
            wait_for(lambda: state_of(client, coro.id) == "COMPLETED", what="the async flow")
            assert async_out.read_text() == "async ok"

            pid_file = project / "sleepy.pid"
            sleepy = client.create_flow_run("sleepy", parameters={"out": str(pid_file)})
            wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the sleeping flow to start")
            pid = int(pid_file.read_text())
            asked = time.monotonic()
            client.cancel_flow_run(sleepy.id)
            wait_for(lambda: state_of(client, sleepy.id) == "CANCELLED", timeout=5, what="the cancel")
            assert time.monotonic() - asked < 2.5
            wait_for(lambda: not alive(pid), timeout=5, what="the flow process to be gone")
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "finished COMPLETED" in output and "finished FAILED" in output and "finished CANCELLED" in output


def test_run_once_takes_due_runs_and_exits(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("once", "process")
        client.create_deployment("record-once", "once", "flows/jobs.py:record")
        runs = [client.create_flow_run("record-once", parameters={"out": str(project / f"o{i}.json"), "value": i}) for i in range(2)]
        later = client.create_flow_run("record-once", parameters={"out": str(project / "later.json"), "value": 9}, start_in=3600)
        worker = start_worker(server, project, "-p", "once", "--run-once")
        output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, output
        assert [state_of(client, r.id) for r in runs] == ["COMPLETED", "COMPLETED"], output
        assert state_of(client, later.id) == "SCHEDULED"


def test_sigterm_drains_in_flight_runs(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("drain", "process")
        client.create_deployment("sleepy-drain", "drain", "flows/jobs.py:sleepy")
        worker = start_worker(server, project, "-p", "drain")
        pid_file = project / "drain.pid"
        run = client.create_flow_run("sleepy-drain", parameters={"out": str(pid_file)})
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the flow to start")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "stopping: waiting up to 5s for 1 runs" in output
        wait_for(lambda: state_of(client, run.id) == "CANCELLED", what="the remaining run to be cancelled")
        assert not alive(int(pid_file.read_text()))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-p", "nowhere"], 1, "work pool 'nowhere' not found; start the worker with --type to create it"),
        (["-p", "x", "-l", "0"], 2, "must be at least 1, got 0"),
        (["-p", "x", "-t", "mainframe"], 2, "unknown worker type 'mainframe'"),
        (["-p", "x", "-t", "kubernetes"], 2, "has a template but no worker backend yet"),
    ],
)
def test_bad_worker_input(server: ServerProcess, project: Path, args: list[str], code: int, message: str) -> None:
    worker = start_worker(server, project, *args)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == code, output
    assert message in output


def test_type_creates_the_missing_pool_and_named_queue(server: ServerProcess, project: Path) -> None:
    worker = start_worker(server, project, "-p", "fresh", "-t", "process", "-q", "nightly", "--run-once")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    with Client(server.address, timeout=10) as client:
        assert client.get_work_pool("fresh").type == "process"
        assert [q.name for q in client.list_work_queues("fresh").work_queues] == ["default", "nightly"]
