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

    def start(self, timeout: float = 30) -> ServerProcess:
        self.proc = subprocess.Popen(
            [str(BIN), "server", "start", "--port", "0", *self.args],
            env=self.env,
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
