"""Real `shiftboss` processes: a server on a free loopback port, and the CLI against it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "shiftboss"
READY = re.compile(r"shiftboss serving (?P<names>.+) on (?P<host>[^:]+):(?P<port>\d+)")


@dataclass
class ServerProcess:
    home: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    lines: list[str] = field(default_factory=list)
    #: The `shiftboss` command to run (another venv's, for an installed wheel).
    executable: Path = BIN
    cwd: Path | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        self.proc = subprocess.Popen(
            [str(self.executable), "server", "start", "--port", "0", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                match = READY.search(line)
                if match:
                    self.port = int(match["port"])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not self.port:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class WorkerProcess:
    """`shiftboss worker start` as a child process whose console is followed line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], executable: Path = BIN) -> None:
        self.proc = subprocess.Popen(
            [str(executable), "worker", "start", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 20.0, count: int = 1) -> None:
        """Wait until the console has printed ``text`` on ``count`` lines."""
        with self.changed:
            if not self.changed.wait_for(lambda: sum(text in line for line in self.lines) >= count, timeout):
                raise AssertionError(f"timed out waiting for the worker to print {text!r}:\n{self.output}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the worker to exit by itself; its exit code and everything it printed."""
        self.proc.wait(timeout)
        self.reader.join(timeout)
        return self.proc.returncode, self.output

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, as a service manager stops it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFTBOSS_")}
    env.update({"SHIFTBOSS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}, **extra)
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("server-home")
    process = ServerProcess(home, base_env(home)).start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `shiftboss ARGS...` against the module's server."""

    def run(*args: str, address: str | None = None, cwd: Path | None = None) -> Result:
        env = base_env(tmp_path / "cli-home", SHIFTBOSS_API_ADDRESS=address or server.address)
        done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd or tmp_path)
        return Result(done.returncode, done.stdout, done.stderr)

    return run
