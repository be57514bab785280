"""The real Docker daemon of the docker worker's tests and benchmarks: reaching it (or
skipping, saying why), the test image, and what a user checks with `docker ps`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftboss import errors
from shiftboss.client import Client
from tests import docker_image

docker = pytest.importorskip("docker", reason="the docker extra is not installed: pip install -e '.[dev]'")
LABEL_RUN = "io.shiftboss.flow-run-id"


def daemon() -> docker.DockerClient:
    """The daemon, or a skip that says why there is none (.ci/run starts one)."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # whatever stops us reaching it is the reason to print
        pytest.skip(f"no Docker daemon answers ({exc}); `.ci/dockerd` installs and starts one")
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = daemon()
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(docker_client: docker.DockerClient) -> str:
    """shiftboss-test:<hash of the wheel's contents>, built on the first use and kept."""
    return docker_image.build(docker_client)


def containers_of(client: docker.DockerClient, run_id: str) -> list[object]:
    return client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})


def remove_containers(client: docker.DockerClient, pool: str) -> None:
    """Whatever containers the runs of a work pool left."""
    for container in client.containers.list(all=True, filters={"label": f"io.shiftboss.work-pool={pool}"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def wait_log(client: Client, run_id: str, text: str, timeout: float = 30.0) -> None:
    """Until a log line of the run holds `text` (on the run's event stream)."""
    with contextlib.suppress(errors.DeadlineExceeded):
        for event in client.watch_flow_run(run_id, logs=True, timeout=timeout):
            if event.kind == "log" and text in event.text:
                return
    lines = [line.text for line in client.flow_run_logs(run_id)]
    if not any(text in line for line in lines):
        raise AssertionError(f"no log line of run {run_id} holds {text!r} after {timeout:g}s: {lines}")


class ContainerCount:
    """How many containers of a pool ran at once, at most, from the daemon's own events."""

    def __init__(self, client: docker.DockerClient, pool: str) -> None:
        self.running: set[str] = set()
        self.most = 0
        self.started = 0
        self.events = client.events(decode=True, filters={"type": "container", "label": f"io.shiftboss.work-pool={pool}"})
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # closed by stop()
            for event in self.events:
                if event.get("status") == "start":
                    self.running.add(event["id"])
                    self.started += 1
                    self.most = max(self.most, len(self.running))
                elif event.get("status") == "die":
                    self.running.discard(event["id"])

    def stop(self) -> None:
        self.events.close()


def mount(folder: Path) -> str:
    return f"{folder}:/work/flows:ro"
