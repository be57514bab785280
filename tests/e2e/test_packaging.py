"""What a user installs: the wheel, built and installed the way `pip install` does, into fresh
virtual environments that know nothing of this repository or its editable install.

One module-wide wheel (building it compiles the core) and one server from it; a venv with
`shiftboss[server]` runs a deployment to COMPLETED, and a venv with plain `shiftboss` has the
SDK, the CLI and the worker, and none of the server's stack.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
#: What a checkout holds that is not source: a build must not depend on any of it.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.cpp", ".*cache", ".hypothesis", ".benchmarks")
SERVER_STACK = ("sqlalchemy", "asyncpg", "aiosqlite", "alembic", "jsonschema", "croniter", "Cython", "grpc_health", "uvloop")


def run(args: list[str | Path], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]


def checked(args: list[str | Path], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = run(args, timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds from a copy of the sources (so that nothing built
    earlier in this checkout, such as build/, can slip into it)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    checked([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--wheel-dir", base / "dist"], timeout=600)
    (built,) = (base / "dist").glob("shiftboss-*.whl")
    return built


def venv(path: Path, requirement: str) -> Path:
    """A fresh venv (no system site-packages) with `requirement` installed at the pinned versions;
    its bin folder."""
    checked([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / "bin" / "python"
    checked([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "-c", CONSTRAINTS, requirement], timeout=600)
    return path / "bin"


@pytest.fixture(scope="module")
def server_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv(tmp_path_factory.mktemp("server-venv") / "venv", f"{wheel}[server]")


@pytest.fixture(scope="module")
def wheel_server(server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`shiftboss server start` from the installed wheel, on an empty home."""
    home = tmp_path_factory.mktemp("empty-home")
    env = base_env(home / "shiftboss", HOME=str(home))
    process = ServerProcess(home, env, executable=server_bin / "shiftboss", cwd=home).start(timeout=60)
    try:
        yield process
    finally:
        assert process.stop() == 0, "".join(process.lines)


def wait_serving(address: str, timeout: float = 30) -> None:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_wheel_with_the_server_extra_runs_a_deployment_to_completed(
    wheel_server: ServerProcess, server_bin: Path, tmp_path: Path
) -> None:
    wait_serving(wheel_server.address)
    assert not any("Traceback" in line for line in wheel_server.lines), "".join(wheel_server.lines)
    env = base_env(tmp_path / "cli-home", SHIFTBOSS_API_ADDRESS=wheel_server.address)

    def shiftboss(*args: str) -> subprocess.CompletedProcess[str]:
        return checked([server_bin / "shiftboss", *args], timeout=60, env=env, cwd=tmp_path)

    shiftboss("work-pool", "create", "wheel-pool", "--type", "noop")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hello.py").write_text("def hello(name: str = 'world'):\n    print(f'hello {name}')\n")
    shiftboss("deployment", "create", "hello", "--pool", "wheel-pool", "--entrypoint", "flows/hello.py:hello")
    worker = WorkerProcess(["-p", "wheel-pool", "--type", "noop"], tmp_path, env, executable=server_bin / "shiftboss")
    try:
        worker.wait_for_line("connected to")
        watched = shiftboss("deployment", "run", "hello", "--watch")
        assert "COMPLETED" in watched.stdout + watched.stderr
    finally:
        code, output = worker.stop()
    assert code == 0, output
    assert not any("Traceback" in line for line in wheel_server.lines), "".join(wheel_server.lines)


def test_the_wheel_alone_is_the_sdk_cli_and_worker_without_the_server_stack(
    wheel: Path, wheel_server: ServerProcess, tmp_path: Path
) -> None:
    bin_ = venv(tmp_path / "venv", str(wheel))
    env = base_env(tmp_path / "home", SHIFTBOSS_API_ADDRESS=wheel_server.address)

    def run_here(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run(list(args), timeout=60, env=env, cwd=tmp_path)

    imported = run_here(bin_ / "python", "-c", "import shiftboss, shiftboss.cli; from shiftboss import Client; print(Client.__name__)")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "Client"
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    present = run_here(bin_ / "python", "-c", probe, *SERVER_STACK, "docker")  # nor the docker extra's SDK
    assert present.returncode == 0, present.stderr
    assert present.stdout.split() == []
    for args in (["--help"], ["worker", "start", "--help"], ["work-pool", "ls", "--help"]):
        helped = run_here(bin_ / "shiftboss", *args)
        assert helped.returncode == 0, helped.stderr
        assert "Usage:" in helped.stdout
    # The CLI of the plain install talks to the server of the other one.
    listed = run_here(bin_ / "shiftboss", "work-pool", "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    # Exporting traces takes the telemetry extra, and says so.
    traced = run(
        [bin_ / "shiftboss", "work-pool", "ls"], timeout=60, env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, cwd=tmp_path
    )
    assert traced.returncode == 1
    assert traced.stderr == (
        "shiftboss: exporting telemetry (OTEL_EXPORTER_OTLP_* or SHIFTBOSS_TELEMETRY_CONSOLE is set) needs the telemetry extra: "
        "pip install 'shiftboss[telemetry]'\n"
    )
    refused = run_here(bin_ / "shiftboss", "server", "start")
    assert refused.returncode != 0
    assert refused.stderr == "shiftboss server needs the server extra: pip install 'shiftboss[server]'\n"
    assert refused.stdout == ""
    # So does a docker worker, before it connects anywhere.
    docker_worker = run_here(bin_ / "shiftboss", "worker", "start", "-p", "dock", "--type", "docker")
    assert docker_worker.returncode == 2
    assert "the docker worker needs the docker extra: pip install 'shiftboss[docker]'" in docker_worker.stderr


def test_a_machine_without_a_cpp_compiler_is_told_what_to_install(tmp_path: Path) -> None:
    """The core is compiled or shiftboss does not install (no pure-Python fallback); the error
    names what to install instead of ending in a compiler's traceback."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    env = {**base_env(tmp_path), "CXX": str(tmp_path / "no-such-c++")}
    built = run(
        [sys.executable, "setup.py", "build_ext", "--build-temp", tmp_path / "temp", "--build-lib", tmp_path / "lib"],
        timeout=120, env=env, cwd=source,
    )
    assert built.returncode != 0
    assert f"shiftboss's scheduling core is compiled C++, and its compiler '{tmp_path / 'no-such-c++'}' is not installed" in built.stderr
    assert "apt-get install g++ python3-dev" in built.stderr and "xcode-select --install" in built.stderr
    assert not list((tmp_path / "lib").rglob("_admission*"))
