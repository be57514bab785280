"""Where a flow run executes. The daemon needs four things of a backend: submit, wait,
kill and logs. `process` runs the flow in its own process group on this machine; `noop`
completes every run at once (benchmarks and tests); `docker` (workers/docker.py, with the
docker extra) runs each in a container. kubernetes and the others are declared by their
templates and are not yet implemented here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Seconds between SIGTERM and SIGKILL when a run is killed.
KILL_GRACE_SECONDS = 5.0
#: Seconds the output a run's process left in its pipes is still read once it has exited.
OUTPUT_DRAIN_SECONDS = 2.0


@dataclass(slots=True)
class RunSpec:
    run_id: str
    entrypoint: str
    parameters: dict[str, Any]
    configuration: dict[str, Any]
    api_address: str
    traceparent: str = ""
    #: What a backend names or labels the run's infrastructure with.
    run_name: str = ""
    lease: int = 0


@dataclass(slots=True)
class Outcome:
    exit_code: int | None
    signal: str = ""  # name of the signal that ended it, if any
    #: Why the run is CRASHED when its infrastructure failed under it (a container that vanished).
    crash: str = ""


class Handle(Protocol):
    async def wait(self) -> Outcome: ...
    async def kill(self, grace: float = KILL_GRACE_SECONDS) -> None: ...
    def logs(self) -> AsyncIterator[tuple[str, str]]: ...


class Infrastructure(Protocol):
    async def submit(self, spec: RunSpec) -> Handle: ...


# ---------------------------------------------------------------- process


def flow_environment(spec: RunSpec) -> dict[str, str]:
    config = spec.configuration
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (config.get("env") or {}).items()})
    env.update(
        SHIFTBOSS_FLOW_RUN_ID=spec.run_id,
        SHIFTBOSS_API_ADDRESS=spec.api_address,
        SHIFTBOSS_ENTRYPOINT=spec.entrypoint,
        SHIFTBOSS_PARAMETERS=json.dumps(spec.parameters),
        # The launcher dies with this worker, even when the worker is killed with SIGKILL.
        SHIFTBOSS_WORKER_PID=str(os.getpid()),
        PYTHONUNBUFFERED="1",
    )
    if spec.traceparent:
        env["TRACEPARENT"] = spec.traceparent
    return env


@dataclass
class ProcessHandle:
    process: asyncio.subprocess.Process
    lines: asyncio.Queue[tuple[str, str] | None] = field(default_factory=asyncio.Queue)
    killed: bool = False
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    def start_reading(self) -> None:
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout, "stdout")),
            asyncio.create_task(self._read(self.process.stderr, "stderr")),
        ]

    async def _read(self, pipe: asyncio.StreamReader | None, name: str) -> None:
        if pipe is None:
            return
        while True:
            line = await pipe.readline()
            if not line:
                break
            self.lines.put_nowait((name, line.decode(errors="replace").rstrip("\n")))

    async def wait(self) -> Outcome:
        """The run ends when its process does. Whatever it left running in its group goes
        with it, and what is still buffered in the pipes is read for a moment at most: a
        process that escaped the group and holds the pipes keeps no run, nor its slot."""
        code = await self._exited()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        _, reading = await asyncio.wait(self._readers, timeout=OUTPUT_DRAIN_SECONDS)
        for reader in reading:
            reader.cancel()
        self.lines.put_nowait(None)
        if code < 0:
            return Outcome(code, signal.Signals(-code).name)
        return Outcome(code)

    async def _exited(self) -> int:
        """The exit code, once the process has exited. asyncio's `wait` also waits for the
        process's pipes to close, which a process it left behind may hold for as long as it
        likes; on Linux a pidfd tells the exit alone (status read without reaping it, which
        asyncio's child watcher does)."""
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):  # not Linux 5.3 or later, or already reaped
            return await self.process.wait()
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
            status = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # reaped by the child watcher already, which hands the code to the loop
            status = None
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        if status is not None:
            return status.si_status if status.si_code == os.CLD_EXITED else -status.si_status
        while self.process.returncode is None:  # a loop turn or two away
            await asyncio.sleep(0.005)
        return self.process.returncode

    async def kill(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """SIGTERM to the whole process group, SIGKILL after the grace period."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def logs(self) -> AsyncIterator[tuple[str, str]]:
        return queued_lines(self.lines)


async def queued_lines(lines: asyncio.Queue[tuple[str, str] | None]) -> AsyncIterator[tuple[str, str]]:
    """The (stream, text) lines a handle's readers put in its queue, until the None that ends them."""
    while True:
        item = await lines.get()
        if item is None:
            return
        yield item


class ProcessInfrastructure:
    async def submit(self, spec: RunSpec) -> ProcessHandle:
        config = spec.configuration
        command = config.get("command")
        argv = command.split() if isinstance(command, str) and command.strip() else [sys.executable, "-m", "shiftboss.workers.execute"]
        if isinstance(command, list) and command:
            argv = [str(part) for part in command]
        cwd = config.get("working_dir") or None
        if cwd and not os.path.isdir(cwd):
            raise FileNotFoundError(f"working_dir {cwd!r} does not exist")
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=flow_environment(spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        handle = ProcessHandle(process)
        handle.start_reading()
        return handle


# ---------------------------------------------------------------- noop


class NoopHandle:
    async def wait(self) -> Outcome:
        return Outcome(0)

    async def kill(self, grace: float = KILL_GRACE_SECONDS) -> None:
        return None

    async def logs(self) -> AsyncIterator[tuple[str, str]]:
        if False:
            yield ("stdout", "")


class NoopInfrastructure:
    async def submit(self, spec: RunSpec) -> NoopHandle:
        return NoopHandle()


BACKENDS: dict[str, type] = {"process": ProcessInfrastructure, "noop": NoopInfrastructure}
#: Backends whose library comes with an extra: loaded only by a worker of their type.
EXTRA_BACKENDS = ("docker",)
DECLARED_ONLY = ("kubernetes", "ecs", "cloud-run", "vertex-ai", "azure-container-instance")


def backend_for(pool_type: str) -> Infrastructure:
    known = [*BACKENDS, *EXTRA_BACKENDS]
    if pool_type in BACKENDS:
        return BACKENDS[pool_type]()
    if pool_type == "docker":
        try:
            from shiftboss.workers.docker import DockerInfrastructure
        except ImportError as exc:
            raise ValueError(f"the docker worker needs the docker extra: pip install 'shiftboss[docker]' ({exc})") from None
        return DockerInfrastructure()
    if pool_type in DECLARED_ONLY:
        raise ValueError(f"work pool type {pool_type!r} has a template but no worker backend yet; use one of {', '.join(known)}")
    raise ValueError(f"unknown worker type {pool_type!r}; one of {', '.join(known)}")
