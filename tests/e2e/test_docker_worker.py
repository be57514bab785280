"""`shiftboss worker start --type docker` against a real Docker daemon: each run a container
of the test image (built here; no registry), with the flows mounted at /work/flows."""

from __future__ import annotations

import contextlib
import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftboss.client import Client
from shiftboss.v1 import scheduler_pb2
from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env
from tests.e2e.docker_daemon import ContainerCount, containers_of, docker_client, image, mount, remove_containers, wait_log  # noqa: F401
from tests.e2e.test_worker import free_port, health
from tests.waiting import wait_state

FLOWS = textwrap.dedent(
    '''
    import os, sys, time

    def show(greeting: str, name: str = "nobody"):
        print(f"{greeting}, {name}", flush=True)
        for key in ("FROM_DEPLOYMENT", "FROM_RUN", "SHARED", "WORKER_SECRET", "SHIFTBOSS_WORKER_PID"):
            print(f"{key}={os.environ.get(key, '-')}", flush=True)
        print(f"run={os.environ['SHIFTBOSS_FLOW_RUN_ID']}", flush=True)
        print("to stderr", file=sys.stderr, flush=True)

    def boom():
        print("about to fail", flush=True)
        raise RuntimeError("the flow broke")

    def hog():
        print("allocating", flush=True)
        hoard = bytearray(256 * 1024 * 1024)
        print(len(hoard))

    def gated(gate: str):
        print("waiting at the gate", flush=True)
        while not os.path.exists(gate):
            time.sleep(0.05)
        print("through the gate", flush=True)
    '''
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "jobs.py").write_text(FLOWS)
    (tmp_path / "gate").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One server for the module (a worker that misses 3 beats of 1 s is OFFLINE); a pool per test."""
    home = tmp_path_factory.mktemp("docker-home")
    process = ServerProcess(home, base_env(home, SHIFTBOSS_HEARTBEAT_SECONDS="1")).start()
    yield process
    process.stop()


@pytest.fixture
def pool(server: ServerProcess, image: str, docker_client):  # type: ignore[no-untyped-def]
    """A docker pool of its own; whatever containers its runs left are removed after the test."""
    name = f"dock-{uuid.uuid4().hex[:8]}"
    with Client(server.address, timeout=10) as client:
        client.create_work_pool(name, "docker")
    yield name
    remove_containers(docker_client, name)


def variables(project: Path, image: str, **more: object) -> dict[str, object]:
    """Job variables for the test image, never pulled, with no network, the flows mounted."""
    return {
        "image": image,
        "image_pull_policy": "Never",
        "network_mode": "none",
        "volumes": [mount(project / "flows"), f"{project / 'gate'}:/gate:ro"],
        **more,
    }


def start_worker(server: ServerProcess, project: Path, *args: str, typed: bool = True, **env: str) -> WorkerProcess:
    """A docker worker; `typed=False` leaves the type to the pool's (known once connected)."""
    environment = base_env(server.home, SHIFTBOSS_API_ADDRESS=server.address, SHIFTBOSS_WORKER_GRACE_SECONDS="5", WORKER_SECRET="leaked", **env)
    return WorkerProcess(["--type", "docker", *args] if typed else list(args), project, environment)


@contextlib.contextmanager
def serving(server: ServerProcess, project: Path, *args: str, typed: bool = True, **env: str) -> Iterator[WorkerProcess]:
    """A docker worker for the block; stopped with SIGTERM after it, which it must survive (exit 0)."""
    worker = start_worker(server, project, *args, typed=typed, **env)
    try:
        yield worker
    except BaseException:
        worker.stop()
        raise
    code, output = worker.stop()
    assert code == 0, output


def orphaned(client: Client, server: ServerProcess, project: Path, pool: str, image: str, worker: str, gate: str) -> scheduler_pb2.FlowRun:
    """A run whose container waits at `gate` while the worker that started it is killed (-9)."""
    deployment = f"gated-{worker}"
    client.create_deployment(deployment, pool, "flows/jobs.py:gated", job_variables=variables(project, image, auto_remove=True))
    first = start_worker(server, project, "-p", pool, "-n", worker)
    run = client.create_flow_run(deployment, parameters={"gate": gate})
    wait_log(client, run.id, "waiting at the gate")
    first.kill()
    return run


def log_text(client: Client, run_id: str) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in client.flow_run_logs(run_id)]


def test_a_run_in_a_container_with_parameters_and_env_from_deployment_and_run(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=10) as client:
        deployed = variables(project, image, env={"FROM_DEPLOYMENT": "d", "SHARED": "deployment"}, labels={"team": "data"})
        client.create_deployment("show", pool, "flows/jobs.py:show", parameters={"greeting": "hello"}, job_variables=deployed)
        with serving(server, project, "-p", pool, "-n", "w1") as worker:
            run = client.create_flow_run("show", parameters={"name": "you"}, job_variables={"env": {"FROM_RUN": "r", "SHARED": "run"}})
            done = wait_state(client, run.id, "COMPLETED", timeout=60)
            assert done.exit_code == 0
            logs = log_text(client, run.id)
            assert ("stdout", "hello, you") in logs
            # env merges key by key (the run's wins); nothing of the worker's own environment
            # reaches the container, nor its pid (the flow does not die with the worker's process).
            for line in ("FROM_DEPLOYMENT=d", "FROM_RUN=r", "SHARED=run", "WORKER_SECRET=-", "SHIFTBOSS_WORKER_PID=-", f"run={run.id}"):
                assert ("stdout", line) in logs, logs
            assert ("stderr", "to stderr") in logs
            # auto_remove is off by default: the container stays, exited, labelled with its run and worker.
            (container,) = containers_of(docker_client, run.id)
            assert container.status == "exited"
            assert container.labels["io.shiftboss.worker"] == "w1" and container.labels["team"] == "data"
            assert container.name == f"shiftboss-{run.id}"
        assert f"{run.name} | hello, you" in worker.output  # stream_output: the worker's console shows the flow's


def test_failures_are_reported_and_the_worker_keeps_serving(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=10) as client:
        removed = variables(project, image, auto_remove=True, stream_output=False)
        client.create_deployment("boom", pool, "flows/jobs.py:boom", job_variables=removed)
        client.create_deployment("nowhere", pool, "flows/jobs.py:boom", job_variables=variables(project, "shiftboss-test:absent"))
        pulled = variables(project, "shiftboss-test:absent", image_pull_policy="IfNotPresent")
        client.create_deployment("unpullable", pool, "flows/jobs.py:boom", job_variables=pulled)
        client.create_deployment("show-after", pool, "flows/jobs.py:show", parameters={"greeting": "still"}, job_variables=removed)
        client.create_deployment("bad-volume", pool, "flows/jobs.py:show", job_variables=variables(project, image, volumes=["just-a-path"]))
        with serving(server, project, "-p", pool) as worker:
            bad = client.create_flow_run("boom")
            failed = wait_state(client, bad.id, "FAILED", timeout=60)
            assert failed.exit_code == 1 and "the flow exited with code 1" in failed.message
            text = "\n".join(t for _, t in log_text(client, bad.id))
            assert "RuntimeError: the flow broke" in text and "Traceback" in text
            assert containers_of(docker_client, bad.id) == []  # auto_remove

            missing = client.create_flow_run("nowhere")
            failed = wait_state(client, missing.id, "FAILED", timeout=30)
            assert "image 'shiftboss-test:absent' is not on the Docker daemon and image_pull_policy is Never" in failed.message

            unpullable = client.create_flow_run("unpullable")  # no registry has it (or none answers)
            failed = wait_state(client, unpullable.id, "FAILED", timeout=60)
            assert "could not pull image 'shiftboss-test:absent': " in failed.message, failed.message

            unmountable = client.create_flow_run("bad-volume", parameters={"greeting": "x"})
            failed = wait_state(client, unmountable.id, "FAILED", timeout=30)
            assert "volumes: 'just-a-path' is not local_path:container_path" in failed.message

            after = client.create_flow_run("show-after")
            wait_state(client, after.id, "COMPLETED", timeout=60)
        assert "boom | about to fail" not in worker.output  # stream_output off: the run's logs only


def test_memory_networks_and_name_reach_the_container(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    networks = [docker_client.networks.create(f"{pool}-{side}") for side in ("front", "back")]
    try:
        with Client(server.address, timeout=10) as client:
            settings = variables(
                project, image, network_mode="", networks=[n.name for n in networks], mem_limit="32m", name="Nightly report"
            )
            client.create_deployment("hog", pool, "flows/jobs.py:hog", job_variables=settings)
            with serving(server, project, "-p", pool) as worker:
                run = client.create_flow_run("hog")
                crashed = wait_state(client, run.id, "CRASHED", "FAILED", timeout=60)
                assert "killed for using more memory than its limit" in crashed.message, (crashed.message, log_text(client, run.id))
                assert crashed.state == scheduler_pb2.RunState.Value("CRASHED")
                assert ("stdout", "allocating") in log_text(client, run.id)
        (container,) = containers_of(docker_client, run.id)
        host = container.attrs["HostConfig"]
        assert host["Memory"] == 32 * 1024 * 1024  # (privileged: refused by this sandbox's runc; see the unit test)
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {n.name for n in networks}
        assert container.name == f"Nightly-report-{run.id[:8]}"
    finally:
        remove_containers(docker_client, pool)
        for network in networks:
            network.remove()


def test_cancel_stops_the_container_and_leaves_none(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=10) as client:
        client.create_deployment("gated", pool, "flows/jobs.py:gated", job_variables=variables(project, image, auto_remove=True))
        with serving(server, project, "-p", pool) as worker:
            run = client.create_flow_run("gated", parameters={"gate": "/gate/never"})
            wait_log(client, run.id, "waiting at the gate")
            assert [c.status for c in containers_of(docker_client, run.id)] == ["running"]
            asked = time.monotonic()
            client.cancel_flow_run(run.id)
            wait_state(client, run.id, "CANCELLED", timeout=20)
            assert time.monotonic() - asked < 4  # SIGTERM ended it; it did not wait for the kill
            assert containers_of(docker_client, run.id) == []


def test_a_container_that_vanishes_crashes_its_run(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=10) as client:
        client.create_deployment("gated-v", pool, "flows/jobs.py:gated", job_variables=variables(project, image))
        with serving(server, project, "-p", pool) as worker:
            run = client.create_flow_run("gated-v", parameters={"gate": "/gate/never"})
            wait_log(client, run.id, "waiting at the gate")
            containers_of(docker_client, run.id)[0].remove(force=True)
            crashed = wait_state(client, run.id, "CRASHED", timeout=20)
            assert "vanished" in crashed.message, crashed.message


def test_a_killed_worker_s_container_is_taken_back_by_its_successor(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    """kill -9 of the worker leaves its container running; the worker started again under its
    name finds it by its labels, claims the run, and reports how it ended."""
    with Client(server.address, timeout=10) as client:
        run = orphaned(client, server, project, pool, image, "phoenix", "/gate/open")
        assert [c.status for c in containers_of(docker_client, run.id)] == ["running"]
        with serving(server, project, "-p", pool, "-n", "phoenix") as second:
            second.wait_for_line(f"({run.id[:8]}) taken back")
            (project / "gate" / "open").touch()
            done = wait_state(client, run.id, "COMPLETED", timeout=30)
            assert done.exit_code == 0 and done.worker == "phoenix"
            assert ("stdout", "through the gate") in log_text(client, run.id)
            assert containers_of(docker_client, run.id) == []
        assert [h.state for h in client.get_flow_run(run.id).history].count(done.state) == 1


def test_an_unreachable_daemon_fails_runs_and_the_health_check(server, project, pool, image) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with Client(server.address, timeout=10) as client:
        client.create_deployment("show-down", pool, "flows/jobs.py:show", parameters={"greeting": "x"}, job_variables=variables(project, image))
        nowhere = f"unix://{project / 'no-docker.sock'}"
        with serving(server, project, "-p", pool, "--with-healthcheck", DOCKER_HOST=nowhere, SHIFTBOSS_WORKER_HEALTHCHECK_PORT=str(port)) as worker:
            worker.wait_for_line("connected to")
            status, body = health(port)
            assert status == 503 and str(body["docker"]).startswith("unreachable: "), body
            assert body["stream"] == "up"
            for _ in range(2):  # one failure does not stop the worker
                run = client.create_flow_run("show-down")
                failed = wait_state(client, run.id, "FAILED", timeout=30)
                assert "cannot reach the Docker daemon" in failed.message, failed.message


def test_a_container_whose_run_was_settled_meanwhile_is_stopped(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Killed, the worker misses its beats and its started run is CRASHED; restarted under its
    name, it claims the container it finds, the scheduler refuses, and the container goes."""
    with Client(server.address, timeout=10) as client:
        run = orphaned(client, server, project, pool, image, "late", "/gate/never")
        crashed = wait_state(client, run.id, "CRASHED", timeout=20)
        with serving(server, project, "-p", pool, "-n", "late") as second:
            second.wait_for_line(f"({run.id[:8]}) stopped: no longer this worker's")
            assert containers_of(docker_client, run.id) == []
            assert client.get_flow_run(run.id).history == crashed.history  # settled once, left as it was
        assert "this worker no longer holds the run" in second.output


def test_a_worker_that_learns_its_type_on_connecting_stops_the_containers_it_did_not_claim(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Started again under its name without --type, the worker's Hello claims nothing (it does
    not know yet that its runs are containers): the scheduler settles the started run as
    CRASHED, and the worker, once it knows its pool's type, stops the container left of it."""
    with Client(server.address, timeout=10) as client:
        run = orphaned(client, server, project, pool, image, "untyped", "/gate/never")
        with serving(server, project, "-p", pool, "-n", "untyped", typed=False) as second:
            second.wait_for_line(f"({run.id[:8]}) is no longer this worker's: stopped what was left of it")
            crashed = wait_state(client, run.id, "CRASHED", timeout=20)
            assert "the process that ran it is gone" in crashed.message or "offline" in crashed.message, crashed.message
            assert containers_of(docker_client, run.id) == []


#: Runs of the limit test: 20 with `make chaos` (SHIFTBOSS_CHAOS=full), fewer in `make test`.
LIMITED_RUNS = 20 if os.environ.get("SHIFTBOSS_CHAOS") == "full" else 6


def test_a_worker_limit_caps_the_containers_running_at_once(server, project, pool, image, docker_client) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address, timeout=10) as client:
        quick = variables(project, image, auto_remove=True, stream_output=False)
        client.create_deployment(f"show-{pool}", pool, "flows/jobs.py:show", parameters={"greeting": "hi"}, job_variables=quick)
        count = ContainerCount(docker_client, pool)
        try:
            with serving(server, project, "-p", pool, "-l", "4"):
                runs = [client.create_flow_run(f"show-{pool}") for _ in range(LIMITED_RUNS)]
                for run in runs:
                    assert wait_state(client, run.id, "COMPLETED", timeout=120).exit_code == 0
        finally:
            count.stop()
        assert count.started == LIMITED_RUNS
        assert 2 <= count.most <= 4, count.most
        assert docker_client.containers.list(all=True, filters={"label": f"io.shiftboss.work-pool={pool}"}) == []
