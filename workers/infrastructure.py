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
from collections.abc import AsyncIterator, Iterator, Mapping
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
    #: The run's own credential (Dispatch.run_token): the flow's SHIFTBOSS_API_KEY.
    token: str = ""
    #: The worker's entrypoint policy (see execute.check_policy) and whether a job
    #: configuration may choose the command.
    allowed_entrypoints: list[str] = field(default_factory=list)
    allow_command: bool = False
    #: The pool's entrypoint policy (Dispatch.allowed_entrypoints), checked by the launcher too.
    pool_entrypoints: list[str] = field(default_factory=list)
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


#: The worker's own settings a flow keeps: where the server is and how to reach it. Every
#: other SHIFTBOSS_* variable (the worker's key, the mesh token, database URLs, the
#: scheduler's key) stays with the worker.
FLOW_SETTINGS = frozenset({
    "SHIFTBOSS_TLS_CA_FILE", "SHIFTBOSS_TLS_CLIENT_CERT_FILE", "SHIFTBOSS_TLS_CLIENT_KEY_FILE", "SHIFTBOSS_TLS_SERVER_NAME",
    "SHIFTBOSS_INSECURE", "SHIFTBOSS_REQUEST_TIMEOUT", "SHIFTBOSS_CREATE_RETRY_SECONDS", "SHIFTBOSS_LOG_FORMAT",
    "SHIFTBOSS_TELEMETRY_CONSOLE", "SHIFTBOSS_TELEMETRY_SAMPLE_RATIO",
})


def shared_environment() -> dict[str, str]:
    """The worker's environment as its flows may see it: less its SHIFTBOSS_* secrets (for
    the flow's environment, and for `{{ $VAR }}` placeholders of a job configuration)."""
    return {k: v for k, v in os.environ.items() if _shared(k)}


def _shared(name: str) -> bool:
    return not name.startswith("SHIFTBOSS_") or name in FLOW_SETTINGS


class SharedEnvironment(Mapping[str, str]):
    """shared_environment() read a variable at a time, for `{{ $VAR }}` placeholders: no
    copy of the whole environment per run (a few hundred variables, for a run that most
    often names none)."""

    def __getitem__(self, name: str) -> str:
        if not _shared(name):
            raise KeyError(name)
        return os.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(shared_environment())

    def __len__(self) -> int:
        return len(shared_environment())


def flow_environment(spec: RunSpec) -> dict[str, str]:
    """The flow's environment: the worker's, less its SHIFTBOSS_* secrets, then the job
    configuration's `env`, then the run's own variables. The parameters are not here: they
    reach the launcher on its standard input (`parameters_input`), whatever their size."""
    config = spec.configuration
    env = shared_environment()
    for key, value in (config.get("env") or {}).items():
        if value is None:  # null unsets the variable for the flow
            env.pop(str(key), None)
        else:
            env[str(key)] = str(value)
    env.update(
        SHIFTBOSS_FLOW_RUN_ID=spec.run_id,
        SHIFTBOSS_API_ADDRESS=spec.api_address,
        SHIFTBOSS_ENTRYPOINT=spec.entrypoint,
        SHIFTBOSS_PARAMETERS_STDIN="1",
        SHIFTBOSS_ALLOWED_ENTRYPOINTS="\n".join(spec.allowed_entrypoints),
        SHIFTBOSS_POOL_ENTRYPOINTS="\n".join(spec.pool_entrypoints),
        # The launcher dies with this worker, even when the worker is killed with SIGKILL.
        SHIFTBOSS_WORKER_PID=str(os.getpid()),
        PYTHONUNBUFFERED="1",
    )
    if spec.token:  # the run's own credential, never the worker's key
        env["SHIFTBOSS_API_KEY"] = spec.token
    if spec.traceparent:
        env["TRACEPARENT"] = spec.traceparent
    return env


def parameters_input(spec: RunSpec) -> bytes:
    """What the launcher reads on its standard input: the parameters, as JSON."""
    return json.dumps(spec.parameters, separators=(",", ":")).encode()


@dataclass
class ProcessHandle:
    process: Any  # an asyncio.subprocess.Process, or a warm.ForkedProcess
    lines: asyncio.Queue[tuple[str, str] | None] = field(default_factory=asyncio.Queue)
    killed: bool = False
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        """Write `data` to the process's standard input, then close it, without waiting:
        a flow that never reads it (a `command` of its own) holds nothing up."""
        stdin = self.process.stdin
        if stdin is None:
            return

        async def write() -> None:
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                stdin.write(data)
                await stdin.drain()
            stdin.close()

        self._readers.append(asyncio.create_task(write()))

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
        if not isinstance(self.process, asyncio.subprocess.Process):  # forked: its parent says
            return await self.process.wait()
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


LAUNCHER = ("-m", "shiftboss.workers.execute")


def launcher_command(spec: RunSpec) -> list[str]:
    """The command that runs the flow: this worker's launcher, or the job configuration's
    `command` when the worker allows one (`--allow-command`): a command is any program."""
    command = spec.configuration.get("command")
    if isinstance(command, str):
        command = command.split()
    if not command:
        return [sys.executable, *LAUNCHER]
    if not spec.allow_command:
        raise PermissionError(
            "command: this worker runs flows with its own launcher; start it with --allow-command "
            "to let a job configuration choose the command"
        )
    return [str(part) for part in command]


class ProcessInfrastructure:
    def __init__(self) -> None:
        #: Runs of the launcher are forked from here (workers/warm.py); None: started cold.
        self.forks: Any = None

    def warm(self, preload: list[str]) -> None:
        """Fork runs from a fork server that has imported the launcher and `preload`."""
        from shiftboss.workers.warm import ForkServer

        self.forks = ForkServer(preload)

    async def close(self) -> None:
        if self.forks is not None:
            await self.forks.close()

    async def submit(self, spec: RunSpec) -> ProcessHandle:
        argv = launcher_command(spec)
        config = spec.configuration
        cwd = config.get("working_dir") or None
        if cwd and not os.path.isdir(cwd):
            raise FileNotFoundError(f"working_dir {cwd!r} does not exist")
        if self.forks is not None and argv[1:] == list(LAUNCHER):
            env = flow_environment(spec)
            del env["SHIFTBOSS_PARAMETERS_STDIN"]  # handed over with the request
            try:
                forked = await self.forks.spawn({"env": env, "cwd": cwd, "entrypoint": spec.entrypoint, "parameters": spec.parameters})
            except (OSError, ConnectionError):
                pass  # started cold below; the fork server is started again for the next run
            else:
                handle = ProcessHandle(forked)
                handle.start_reading()
                return handle
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=flow_environment(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        handle = ProcessHandle(process)
        handle.start_reading()
        handle.feed(parameters_input(spec))
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
