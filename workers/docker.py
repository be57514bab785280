"""The docker backend: each run a container, through the Docker Engine API (the docker SDK,
`pip install 'shiftboss[docker]'`).

The SDK blocks, so every call runs in a thread of its own (a run holds three while its
container lives: the wait and the two output streams; a shared pool of a few threads would
starve with a handful of runs). The worker, not the daemon, removes a container that
`auto_remove` asks to remove, once its exit code and output are read: a daemon's own
auto-removal races the worker reading them. A worker that restarts finds its containers by
their labels (see `leftovers`) and the daemon settles them with the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from shiftboss.workers.docker_config import (
    LABEL_AUTO_REMOVE,
    LABEL_LEASE,
    LABEL_POOL,
    LABEL_RUN,
    LABEL_RUN_NAME,
    LABEL_WORKER,
    Container,
    container_for,
)
from shiftboss.workers.infrastructure import KILL_GRACE_SECONDS, OUTPUT_DRAIN_SECONDS, Outcome, RunSpec, queued_lines

T = TypeVar("T")
#: Seconds a control call (create, start, stop, inspect) may take before the daemon counts as unreachable.
CONTROL_TIMEOUT = 30.0
_UNREACHABLE = (docker.errors.DockerException, requests.exceptions.ConnectionError, requests.exceptions.Timeout)


class DockerUnavailable(RuntimeError):
    """The Docker daemon did not answer."""


def in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """`call` in a daemon thread of its own; its result (or exception) as a future of this loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # its awaiting task was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, daemon=True, name=f"docker-{getattr(call, '__name__', 'call')}").start()
    return future


def unreachable(exc: BaseException) -> DockerUnavailable:
    return DockerUnavailable(f"cannot reach the Docker daemon (DOCKER_HOST, else /var/run/docker.sock): {exc}")


@dataclass(slots=True)
class Leftover:
    """A container of this worker found when it starts: the run it was, and a handle on it."""

    run_id: str
    run_name: str
    lease: int
    running: bool
    handle: ContainerHandle


class ContainerHandle:
    def __init__(self, container: Any, streaming: Any, auto_remove: bool, since: int | None = None) -> None:
        self.container = container
        self.streaming = streaming  # a client without a read timeout: a flow may be silent for hours
        self.auto_remove = auto_remove
        self.lines: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self.killed = False
        loop = asyncio.get_running_loop()
        self.readers = [in_thread(self._read, loop, name, since) for name in ("stdout", "stderr")]

    def _read(self, loop: asyncio.AbstractEventLoop, name: str, since: int | None) -> None:
        options = {"stdout": name == "stdout", "stderr": name == "stderr", "stream": True, "follow": True}
        if since is not None:
            options["since"] = since
        pending = b""
        # The stream ends with the container; removed or unreachable, it ends with what came.
        with contextlib.suppress(docker.errors.APIError, requests.exceptions.ChunkedEncodingError, *_UNREACHABLE):
            for chunk in self.streaming.api.logs(self.container.id, **options):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    loop.call_soon_threadsafe(self.lines.put_nowait, (name, line.decode(errors="replace").rstrip("\r")))
        if pending:
            loop.call_soon_threadsafe(self.lines.put_nowait, (name, pending.decode(errors="replace")))

    async def wait(self) -> Outcome:
        """The container's exit code once it stops; CRASHED with the reason when it vanished
        (removed by someone else), was killed for memory, or its daemon went away."""
        try:
            status = await in_thread(self.streaming.api.wait, self.container.id)
            code = int(status.get("StatusCode", -1))
            state = (await in_thread(self.container.client.api.inspect_container, self.container.id))["State"]
            outcome = Outcome(code)
            if state.get("RemovalInProgress") or state.get("Dead"):  # removed under it: `docker rm -f`
                raise docker.errors.NotFound("removed")
            if state.get("OOMKilled"):
                outcome.crash = f"the container was killed for using more memory than its limit (exit code {code})"
        except docker.errors.NotFound:
            outcome = Outcome(None, crash=f"the run's container {self.container.name} vanished: it was removed while the flow ran")
        except _UNREACHABLE as exc:
            outcome = Outcome(None, crash=f"lost the Docker daemon while the run's container ran: {exc}")
        _, reading = await asyncio.wait(self.readers, timeout=OUTPUT_DRAIN_SECONDS)
        for reader in reading:
            reader.cancel()
        self.lines.put_nowait(None)
        if self.auto_remove:
            await self.remove()
        return outcome

    async def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError, *_UNREACHABLE):
            await in_thread(self.container.remove, force=True)

    async def kill(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """SIGTERM to the flow (through the container's init), SIGKILL after the grace period."""
        self.killed = True
        with contextlib.suppress(docker.errors.NotFound, *_UNREACHABLE):
            await in_thread(self.container.stop, timeout=max(1, round(grace)))

    def logs(self) -> AsyncIterator[tuple[str, str]]:
        return queued_lines(self.lines)


class DockerInfrastructure:
    def __init__(self) -> None:
        self.worker = ""
        self.pool = ""
        self._control: Any = None
        self._streaming: Any = None
        self._lock = threading.Lock()

    def bind(self, worker: str, pool: str) -> None:
        """The worker whose containers these are: their labels say so."""
        self.worker, self.pool = worker, pool

    def clients(self) -> tuple[Any, Any]:
        """(control, streaming) clients, made on first use and again after the daemon was lost."""
        with self._lock:
            if self._control is None:
                try:
                    self._control = docker.from_env(timeout=CONTROL_TIMEOUT)
                    self._streaming = docker.from_env(timeout=None, max_pool_size=256)
                except _UNREACHABLE as exc:
                    self._control = self._streaming = None
                    raise unreachable(exc) from None
            return self._control, self._streaming

    def forget_clients(self) -> None:
        with self._lock:
            self._control = self._streaming = None

    async def submit(self, spec: RunSpec) -> ContainerHandle:
        plan = container_for(spec, self.worker, self.pool)
        try:
            container, streaming = await in_thread(self._start, plan)
        except _UNREACHABLE as exc:
            self.forget_clients()
            raise unreachable(exc) from None
        return ContainerHandle(container, streaming, plan.auto_remove)

    def _start(self, plan: Container) -> tuple[Any, Any]:
        control, streaming = self.clients()
        self._ensure_image(control, plan)
        try:
            container = control.containers.create(plan.image, **plan.create)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container of this run left by an earlier attempt
                raise RuntimeError(f"the Docker daemon refused the container: {exc.explanation or exc}") from None
            control.containers.get(plan.create["name"]).remove(force=True)
            container = control.containers.create(plan.image, **plan.create)
        try:
            for network in plan.networks:
                control.networks.get(network).connect(container)
            container.start()
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise RuntimeError(f"the Docker daemon could not start the container: {exc.explanation or exc}") from None
        return container, streaming

    @staticmethod
    def _ensure_image(control: Any, plan: Container) -> None:
        if plan.pull_policy != "Always":
            try:
                control.images.get(plan.image)
                return
            except docker.errors.ImageNotFound:
                if plan.pull_policy == "Never":
                    raise RuntimeError(
                        f"image {plan.image!r} is not on the Docker daemon and image_pull_policy is Never: build or load it there first"
                    ) from None
        try:
            control.images.pull(plan.image)  # the SDK takes the tag from the reference, else latest
        except docker.errors.APIError as exc:
            raise RuntimeError(f"could not pull image {plan.image!r}: {exc.explanation or exc}") from None

    async def leftovers(self) -> list[Leftover]:
        """This worker's containers the daemon still has, running or not."""
        try:
            found, streaming = await in_thread(self._leftovers)
        except _UNREACHABLE as exc:
            self.forget_clients()
            raise unreachable(exc) from None
        now = int(time.time())
        return [
            Leftover(
                run_id=c.labels[LABEL_RUN],
                run_name=c.labels.get(LABEL_RUN_NAME, ""),
                lease=int(c.labels.get(LABEL_LEASE) or 0),
                running=c.status in ("running", "restarting", "paused", "created"),
                # Output from now on: what it printed before was sent by the worker that started it.
                handle=ContainerHandle(c, streaming, c.labels.get(LABEL_AUTO_REMOVE) == "true", since=now),
            )
            for c in found
        ]

    def _leftovers(self) -> tuple[list[Any], Any]:
        control, streaming = self.clients()
        labels = [f"{LABEL_POOL}={self.pool}", f"{LABEL_WORKER}={self.worker}"]
        return [c for c in control.containers.list(all=True, filters={"label": labels}) if LABEL_RUN in c.labels], streaming

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the daemon answers a ping now (called from the health check's thread)."""
        try:
            self._ping()
        except (DockerUnavailable, *_UNREACHABLE) as exc:
            return False, {"docker": f"unreachable: {exc}"}
        return True, {"docker": "reachable"}

    def _ping(self) -> None:
        control, _ = self.clients()
        try:
            control.api.ping()
        except _UNREACHABLE:
            self.forget_clients()
            raise
