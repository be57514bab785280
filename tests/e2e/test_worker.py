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
from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env
from tests.waiting import wait_state

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

    def stamped(out: str):
        start = time.time()
        time.sleep(0.3)
        with open(out, "a") as fh:
            fh.write(f"{start} {time.time()}\\n")

    def suicide():
        import signal
        print("going down", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def leaves_a_child(out: str):
        import subprocess
        child = subprocess.Popen(["sleep", "106"])  # inherits the flow's stdout and stderr
        with open(out, "w") as fh:
            fh.write(str(child.pid))
        print("leaving", flush=True)

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


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", worker=None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"; the worker printed:\n{worker.output}" if worker else ""))
        time.sleep(0.05)


def start_worker(server: ServerProcess, project: Path, *args: str) -> WorkerProcess:
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_WORKER_GRACE_SECONDS="5")
    return WorkerProcess(list(args), project, env)


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
            wait_state(client, ok.id, "COMPLETED")
            assert json.loads(out.read_text()) == {"value": 7, "label": "deployed", "run": ok.id, "pid": json.loads(out.read_text())["pid"]}
            assert client.get_flow_run(ok.id).exit_code == 0
            assert any("recorded 7" in line.text for line in client.flow_run_logs(ok.id))

            bad = client.create_flow_run("boom")
            wait_state(client, bad.id, "FAILED")
            logs = "\n".join(line.text for line in client.flow_run_logs(bad.id))
            assert "RuntimeError: the flow broke" in logs and "Traceback" in logs

            missing = client.create_flow_run("record", parameters={"value": 1})
            wait_state(client, missing.id, "FAILED")
            assert "missing parameter out" in "\n".join(line.text for line in client.flow_run_logs(missing.id))

            async_out = project / "async.txt"
            coro = client.create_flow_run("coro", parameters={"out": str(async_out)})
            wait_state(client, coro.id, "COMPLETED")
            assert async_out.read_text() == "async ok"

            pid_file = project / "sleepy.pid"
            sleepy = client.create_flow_run("sleepy", parameters={"out": str(pid_file)})
            wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the sleeping flow to start")
            pid = int(pid_file.read_text())
            asked = time.monotonic()
            client.cancel_flow_run(sleepy.id)
            wait_state(client, sleepy.id, "CANCELLED", timeout=5)
            assert time.monotonic() - asked < 2.5
            wait_for(lambda: not alive(pid), timeout=5, what="the flow process to be gone")
        finally:
            code, output = worker.stop()
        assert code == 0, output
        assert "finished COMPLETED" in output and "finished FAILED" in output and "finished CANCELLED" in output


def test_run_once_takes_due_runs_and_exits(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("once", "process")
        client.create_deployment("record-once", "once", "flows/jobs.py:record")
        runs = [client.create_flow_run("record-once", parameters={"out": str(project / f"o{i}.json"), "value": i}) for i in range(2)]
        later = client.create_flow_run("record-once", parameters={"out": str(project / "later.json"), "value": 9}, start_in=3600)
        code, output = start_worker(server, project, "-p", "once", "--run-once").finish()
        assert code == 0, output
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
        code, output = worker.stop()
        assert code == 0, output
        assert "stopping: waiting up to 5s for 1 runs" in output
        wait_state(client, run.id, "CANCELLED")
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
    exit_code, output = start_worker(server, project, *args).finish()
    assert exit_code == code, output
    assert message in output


def test_a_queue_of_another_pool_is_refused(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("mine", "process")
        client.create_work_pool("theirs", "process")
        client.create_work_queue("nightly", "theirs")
    code, output = start_worker(server, project, "-p", "mine", "-q", "nightly").finish()
    assert code == 1, output
    assert "queues: 'nightly' is a queue of work pool 'theirs', not of 'mine'" in output
    with Client(server.address, timeout=10) as client:
        assert [q.name for q in client.list_work_queues("mine").work_queues] == ["default"]


def test_unreachable_server_is_retried_then_given_up(tmp_path: Path, project: Path) -> None:
    env = base_env(
        tmp_path / "nohome", SHIFTBOSS_API_ADDRESS=f"127.0.0.1:{free_port()}", SHIFTBOSS_WORKER_CONNECT_TIMEOUT="2"
    )
    code, output = WorkerProcess(["-p", "anything"], project, env).finish()
    assert code == 1, output
    assert "stream down, retrying in" in output
    assert "cannot reach the shiftboss server at 127.0.0.1:" in output and "(gave up after 2s)" in output


def test_type_creates_the_missing_pool_and_named_queue(server: ServerProcess, project: Path) -> None:
    code, output = start_worker(server, project, "-p", "fresh", "-t", "process", "-q", "nightly", "--run-once").finish()
    assert code == 0, output
    with Client(server.address, timeout=10) as client:
        assert client.get_work_pool("fresh").type == "process"
        assert [q.name for q in client.list_work_queues("fresh").work_queues] == ["default", "nightly"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_killed_worker_runs_are_crashed_or_picked_up_by_another(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("fragile", "process")
        client.create_deployment("sleepy-k", "fragile", "flows/jobs.py:sleepy")
        client.create_deployment("record-k", "fragile", "flows/jobs.py:record")
        victim = start_worker(server, project, "-p", "fragile", "-n", "victim", "--prefetch-seconds", "30")
        pid_file = project / "victim.pid"
        started = client.create_flow_run("sleepy-k", parameters={"out": str(pid_file)})
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the flow to start")
        out = project / "later.json"
        waiting = client.create_flow_run("record-k", parameters={"out": str(out), "value": 5}, start_in=8)
        victim.wait_for_line(f"({waiting.id[:8]}) received")
        victim.kill()
        wait_for(lambda: not alive(int(pid_file.read_text())), timeout=5, what="the orphaned flow to die with its worker")
        wait_state(client, started.id, "CRASHED", timeout=15)
        wait_state(client, waiting.id, "SCHEDULED", "LATE", timeout=15)
        rescuer = start_worker(server, project, "-p", "fragile", "-n", "rescuer", "--prefetch-seconds", "30")
        try:
            wait_state(client, waiting.id, "COMPLETED", timeout=30)
        finally:
            code, output = rescuer.stop()
        assert code == 0, output
        run = client.get_flow_run(waiting.id)
        assert run.worker == "rescuer"
        assert json.loads(out.read_text())["value"] == 5
        assert [h.state for h in run.history].count(run.state) == 1  # completed exactly once


def test_a_worker_restarted_under_its_name_settles_the_runs_its_old_process_held(server: ServerProcess, project: Path) -> None:
    """Killed and started again within the heartbeat window, the worker is ONLINE the whole
    time, so no offline sweep looks at its runs: its Hello says what it holds, and a run it
    does not hold, started by the process that died, is CRASHED at once."""
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("phoenix", "process")
        client.create_deployment("sleepy-p", "phoenix", "flows/jobs.py:sleepy")
        client.create_deployment("record-p", "phoenix", "flows/jobs.py:record")
        first = start_worker(server, project, "-p", "phoenix", "-n", "same")
        pid_file = project / "phoenix.pid"
        held = client.create_flow_run("sleepy-p", parameters={"out": str(pid_file)})
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the flow to start", worker=first)
        wait_state(client, held.id, "RUNNING")
        first.kill()
        wait_for(lambda: not alive(int(pid_file.read_text())), timeout=5, what="the orphaned flow to die with its worker")
        second = start_worker(server, project, "-p", "phoenix", "-n", "same")
        try:
            crashed = wait_state(client, held.id, "CRASHED", timeout=10)
            assert "reconnected without it" in crashed.message
            out = project / "after.json"
            later = client.create_flow_run("record-p", parameters={"out": str(out), "value": 7})
            wait_state(client, later.id, "COMPLETED", timeout=30)
        finally:
            code, output = second.stop()
        assert code == 0, output
        assert json.loads(out.read_text())["value"] == 7


def test_a_run_ends_when_its_process_ends_not_when_its_children_close_the_output(server: ServerProcess, project: Path) -> None:
    """A flow that leaves a process holding its output (here `sleep 106`) is over when the
    flow's process exits: the leftover is killed with its group and the slot freed."""
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("leaky", "process")
        client.create_deployment("leaves", "leaky", "flows/jobs.py:leaves_a_child")
        worker = start_worker(server, project, "-p", "leaky", "-n", "w")
        try:
            out = project / "child.pid"
            run = client.create_flow_run("leaves", parameters={"out": str(out)})
            wait_state(client, run.id, "COMPLETED", timeout=15)
            wait_for(lambda: not alive(int(out.read_text())), timeout=5, what="the leftover child to be killed")
            assert [line.text for line in client.flow_run_logs(run.id)] == ["leaving"]
        finally:
            code, output = worker.stop()
        assert code == 0, output


def test_outcomes_reach_a_restarted_server(tmp_path: Path, project: Path) -> None:
    """A run that ends while the server is down is recorded once it is back, and never runs twice."""
    home = tmp_path / "home2"
    port = free_port()
    env = base_env(home, SHIFTBOSS_HEARTBEAT_SECONDS="2")
    server = ServerProcess(home, env, ["--port", str(port)]).start()
    try:
        with Client(server.address, timeout=10) as client:
            client.create_work_pool("steady", "process")
            client.create_deployment("record-r", "steady", "flows/jobs.py:record")
            worker = start_worker(server, project, "-p", "steady", "-n", "steady-worker")
            out = project / "across.json"
            run = client.create_flow_run("record-r", parameters={"out": str(out), "value": 3}, start_in=2)
            worker.wait_for_line(f"({run.id[:8]}) received")
        assert server.stop() == 0
        worker.wait_for_line(f"({run.id[:8]}) finished COMPLETED")
        server = ServerProcess(home, env, ["--port", str(port)]).start()
        worker.wait_for_line("connected to", count=2)
        with Client(server.address, timeout=10) as client:
            # Settled in the Hello, before anything could be dispatched.
            assert state_of(client, run.id) == "COMPLETED", worker.output + "".join(server.lines)
            assert client.get_flow_run(run.id).worker == "steady-worker"
            # The stopping server drained the worker's stream; the new stream takes runs again.
            after = client.create_flow_run("record-r", parameters={"out": str(project / "after.json"), "value": 4})
            wait_state(client, after.id, "COMPLETED", timeout=15)
        code, output = worker.stop()
        assert code == 0, output
        assert "stream down, retrying" in output
        assert output.count(f"({run.id[:8]}) started") == 1, output
    finally:
        server.stop()


def test_two_workers_with_limit_one_never_overlap(server: ServerProcess, project: Path) -> None:
    stamps = project / "stamps.txt"
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("narrow", "process")
        client.set_work_queue_concurrency_limit("default", "narrow", 1)
        client.create_deployment("stamped", "narrow", "flows/jobs.py:stamped", parameters={"out": str(stamps)})
        workers = [start_worker(server, project, "-p", "narrow", "-n", f"n{i}", "-l", "1") for i in range(2)]
        try:
            runs = [client.create_flow_run("stamped") for _ in range(6)]
            for r in runs:
                wait_state(client, r.id, "COMPLETED", timeout=60)
            went_to = {client.get_flow_run(r.id).worker for r in runs}
        finally:
            outputs = [w.stop()[1] for w in workers]
    intervals = sorted(tuple(map(float, line.split())) for line in stamps.read_text().splitlines())
    assert len(intervals) == 6
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert start >= end, f"runs overlapped: {intervals}\n{outputs}"
    assert went_to <= {"n0", "n1"}


def test_signal_import_error_and_the_worker_keeps_going(server: ServerProcess, project: Path) -> None:
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("rough", "process")
        client.create_deployment("suicide", "rough", "flows/jobs.py:suicide")
        client.create_deployment("missing", "rough", "flows/nope.py:flow")
        client.create_deployment("typo", "rough", "flows/jobs.py:recrod")
        client.create_deployment("fine", "rough", "flows/jobs.py:record")
        worker = start_worker(server, project, "-p", "rough")
        try:
            killed = client.create_flow_run("suicide")
            wait_state(client, killed.id, "CRASHED")
            assert "SIGKILL" in client.get_flow_run(killed.id).message
            missing = client.create_flow_run("missing")
            wait_state(client, missing.id, "FAILED")
            assert "flows/nope.py" in "\n".join(line.text for line in client.flow_run_logs(missing.id))
            typo = client.create_flow_run("typo")
            wait_state(client, typo.id, "FAILED")
            assert "recrod" in "\n".join(line.text for line in client.flow_run_logs(typo.id))
            out = project / "fine.json"
            fine = client.create_flow_run("fine", parameters={"out": str(out), "value": 1})
            wait_state(client, fine.id, "COMPLETED")
        finally:
            code, output = worker.stop()
        assert code == 0, output


def health(port: int) -> tuple[int, dict[str, object]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthcheck_turns_unhealthy_when_the_stream_stays_down(tmp_path: Path, project: Path) -> None:
    home = tmp_path / "home3"
    server = ServerProcess(home, base_env(home)).start()
    port = free_port()
    env = base_env(
        home,
        SHIFTBOSS_API_ADDRESS=server.address,
        SHIFTBOSS_WORKER_HEALTHCHECK_HOST="127.0.0.1",
        SHIFTBOSS_WORKER_HEALTHCHECK_PORT=str(port),
        SHIFTBOSS_WORKER_HEALTHCHECK_DOWN_SECONDS="1",
    )
    worker = WorkerProcess(["-p", "probed", "-t", "process", "-n", "probed-1", "--with-healthcheck"], project, env)
    try:
        worker.wait_for_line("connected to")
        status, body = health(port)
        assert status == 200 and body["status"] == "healthy" and body["stream"] == "up", body
        assert body["worker"] == "probed-1" and body["pool"] == "probed"
        assert server.stop() == 0
        worker.wait_for_line("stream down")
        status, body = wait_for(lambda: (reply := health(port))[0] == 503 and reply, what="the probe to fail")
        assert body["status"] == "unhealthy" and body["stream"] == "down", body
    finally:
        code, output = worker.stop()
        server.stop()
    assert code == 0, output
    assert f"health check at http://127.0.0.1:{port}/health" in output


def test_healthcheck_port_in_use_is_refused(server: ServerProcess, project: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(
            server.home, SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_WORKER_HEALTHCHECK_HOST="127.0.0.1",
            SHIFTBOSS_WORKER_HEALTHCHECK_PORT=str(port),
        )
        code, output = WorkerProcess(["-p", "x", "-t", "process", "--with-healthcheck"], project, env).finish()
    assert code == 1, output
    assert f"cannot serve the health check on 127.0.0.1:{port}" in output


def test_deployment_run_watch_follows_the_run_to_its_end(server: ServerProcess, project: Path) -> None:
    env = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address)

    def shiftboss(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=env, cwd=project, capture_output=True, text=True, timeout=60)

    with Client(server.address, timeout=10) as client:
        client.create_work_pool("watched", "process")
        client.create_deployment("record-w", "watched", "flows/jobs.py:record", parameters={"out": str(project / "w.json")})
        client.create_deployment("boom-w", "watched", "flows/jobs.py:boom")
    worker = start_worker(server, project, "-p", "watched")
    try:
        ok = shiftboss("deployment", "run", "record-w", "--param", "value=4", "--watch")
        assert ok.returncode == 0, ok.stderr
        lines = [line.split(" ", 1)[1] for line in ok.stdout.splitlines() if line.startswith("20")]
        states = [line.split()[1].rstrip(":") for line in lines if line.startswith("state")]
        assert states == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], ok.stdout
        assert any(line.startswith("log") and "recorded 4" in line for line in lines), ok.stdout
        bad = shiftboss("deployment", "run", "boom-w", "--watch", "-o", "json")
        assert bad.returncode == 1
        events = [json.loads(line) for line in bad.stdout.splitlines() if line.startswith('{"run"')]
        assert events[-1]["kind"] == "state" and events[-1]["state"] == "FAILED" and events[-1]["exit_code"] == 1
        assert any(e["kind"] == "log" and "RuntimeError: the flow broke" in e["text"] for e in events)
        assert "ended FAILED" in bad.stderr
    finally:
        code, output = worker.stop()
    assert code == 0, output


def test_entrypoints_outside_the_project_and_custom_commands_are_refused_unless_allowed(
    server: ServerProcess, project: Path
) -> None:
    """An operator's `os:system`, a function of an installed package, or a command of a job
    configuration's choosing is arbitrary code on the worker's machine: refused by default,
    each run FAILED saying why; run once the worker allows it."""
    marker = project / "pwned"
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("guarded", "process")
        client.create_deployment("system", "guarded", "os:system", parameters={"command": f"touch {marker}"})
        client.create_deployment("installed", "guarded", "json:dumps", parameters={"obj": 1})
        client.create_deployment("outside", "guarded", "/etc/../tmp/elsewhere.py:f")
        client.create_deployment("own", "guarded", "flows.jobs:coro", parameters={"out": str(project / "own.txt")})
        refused = [client.create_flow_run(name) for name in ("system", "installed", "outside")]
        own = client.create_flow_run("own")
        commanded = client.create_flow_run("own", job_variables={"command": f"touch {marker}"})
        code, output = start_worker(server, project, "-p", "guarded", "--run-once").finish()
        assert code == 0, output
        assert [state_of(client, r.id) for r in refused] == ["FAILED"] * 3, output
        assert state_of(client, own.id) == "COMPLETED" and (project / "own.txt").read_text() == "async ok"
        assert state_of(client, commanded.id) == "FAILED"
        assert not marker.exists()
        logs = {r.id: "\n".join(line.text for line in client.flow_run_logs(r.id)) for r in [*refused, commanded]}
        assert "entrypoint 'os' is outside the project" in logs[refused[0].id]
        assert "entrypoint 'json' is outside the project" in logs[refused[1].id]
        assert "not found" in logs[refused[2].id] or "outside the project" in logs[refused[2].id]
        assert "command: this worker runs flows with its own launcher; start it with --allow-command" in logs[commanded.id]

        allowed = client.create_flow_run("system")
        commanded = client.create_flow_run("own", job_variables={"command": f"touch {marker}"})
        code, output = start_worker(server, project, "-p", "guarded", "--run-once", "--allow-entrypoint", "os", "--allow-command").finish()
        assert code == 0, output
        assert [state_of(client, r.id) for r in (allowed, commanded)] == ["COMPLETED", "COMPLETED"], output
        assert marker.exists()

        # A run made before its pool narrowed its entrypoints: the launcher checks the pool's too.
        late = client.create_flow_run("own")
        client.update_work_pool("guarded", allowed_entrypoints=["etl"])
        code, output = start_worker(server, project, "-p", "guarded", "--run-once").finish()
        assert code == 0 and state_of(client, late.id) == "FAILED", output
        late_logs = "\n".join(line.text for line in client.flow_run_logs(late.id))
        assert "entrypoint 'flows.jobs' is not among the entrypoints its work pool allows (etl)" in late_logs


WARM = textwrap.dedent(
    '''
    import os, sys

    def parent(out: str, then: str = ""):
        with open(out, "w") as fh:
            fh.write(str(os.getppid()))
        if then:
            import time
            time.sleep(60)

    def where(out: str):
        parent = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
        with open(out, "w") as fh:
            fh.write(f"{parent[2].decode() if len(parent) > 2 else ''} {'colorsys' in sys.modules} {os.getpgid(0) == os.getpid()}")
    '''
)


def test_runs_fork_from_a_warm_launcher_unless_told_not_to(server: ServerProcess, project: Path) -> None:
    """By default a run is forked from a fork server that imported the launcher (and the
    modules named with --preload) once; --no-preload starts a new Python per run. Either
    way the run leads its own process group."""
    (project / "flows" / "warm.py").write_text(WARM)
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("warm", "process")
        client.create_deployment("where", "warm", "flows/warm.py:where")
        warm = client.create_flow_run("where", parameters={"out": str(project / "warm.txt")})
        code, output = start_worker(server, project, "-p", "warm", "--run-once", "--preload", "colorsys").finish()
        assert code == 0 and state_of(client, warm.id) == "COMPLETED", output
        assert (project / "warm.txt").read_text() == "shiftboss.workers.forkserver True True"
        cold = client.create_flow_run("where", parameters={"out": str(project / "cold.txt")})
        code, output = start_worker(server, project, "-p", "warm", "--run-once", "--no-preload").finish()
        assert code == 0 and state_of(client, cold.id) == "COMPLETED", output
        assert (project / "cold.txt").read_text().split()[1:] == ["False", "True"]
        assert not (project / "cold.txt").read_text().startswith("shiftboss.workers.forkserver")


def test_a_fork_server_that_dies_takes_its_runs_and_is_started_again(server: ServerProcess, project: Path) -> None:
    (project / "flows" / "warm.py").write_text(WARM)
    with Client(server.address, timeout=10) as client:
        client.create_work_pool("forks", "process")
        client.create_deployment("parent", "forks", "flows/warm.py:parent")
        worker = start_worker(server, project, "-p", "forks")
        try:
            first = client.create_flow_run("parent", parameters={"out": str(project / "first"), "then": "sleep"})
            forkserver = int(wait_for(lambda: (project / "first").exists() and (project / "first").read_text(), what="the first run", worker=worker))
            os.kill(forkserver, signal.SIGKILL)
            wait_state(client, first.id, "CRASHED", timeout=20)
            assert "SIGKILL" in client.get_flow_run(first.id).message
            second = client.create_flow_run("parent", parameters={"out": str(project / "second")})
            wait_state(client, second.id, "COMPLETED", timeout=20)
            assert int((project / "second").read_text()) not in (forkserver, worker.proc.pid)  # a new fork server
        finally:
            worker.stop()


def test_short_leases_hold_for_runs_started_at_once_and_for_prefetched_ones(tmp_path: Path, project: Path) -> None:
    """A run that starts at once is acknowledged by its Started, a prefetched one by an Ack
    when it arrives: with one-second leases, neither lapses back to SCHEDULED meanwhile."""
    from shiftboss.v1 import scheduler_pb2
    home = tmp_path / "short-leases"
    server = ServerProcess(home, base_env(home, SHIFTBOSS_LEASE_SECONDS="1", SHIFTBOSS_HEARTBEAT_SECONDS="1")).start()
    worker = None
    try:
        with Client(server.address, timeout=10) as client:
            client.create_work_pool("quick", "noop")
            client.create_deployment("now", "quick", "flows/jobs.py:record")
            worker = start_worker(server, project, "-p", "quick", "-n", "quick", "--type", "noop", "--prefetch-seconds", "30")
            worker.wait_for_line("connected to")
            later = client.create_flow_run("now", start_in=3)  # taken now, started in 3 s: three leases later
            now = client.create_flow_run("now")
            for run in (now, later):
                done = wait_state(client, run.id, "COMPLETED", timeout=20)
                states = [scheduler_pb2.RunState.Name(h.state) for h in done.history]
                assert states == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], done.history
                assert done.worker == "quick"
        assert worker.output.count(f"({later.id[:8]}) received") == 1, worker.output  # dispatched once
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
