"""A server started with --auth, driven as a user would: the first admin key from the
server's storage, keys from the CLI, and workers that present theirs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env

FLOW = "import sys\n\ndef hello(out: str):\n    open(out, 'w').write('hello')\n    print('said hello', flush=True)\n"


def shiftboss(env: dict[str, str], *args: str, key: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], env={**env, "SHIFTBOSS_API_KEY": key}, capture_output=True, text=True, timeout=60
    )


def test_keys_roles_and_workers_against_a_server_with_auth(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = base_env(home)
    made = shiftboss(env, "server", "create-admin-key", "root")
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip().splitlines()[-1]
    assert admin.startswith("sb_")

    server = ServerProcess(home, env, args=["--auth"]).start()
    try:
        env = {**env, "SHIFTBOSS_API_ADDRESS": server.address}
        anonymous = shiftboss(env, "work-pool", "ls")
        assert anonymous.returncode == 1 and "missing API key" in anonymous.stderr

        assert shiftboss(env, "work-pool", "create", "etl", "--type", "process", key=admin).returncode == 0
        created = shiftboss(env, "api-key", "create", "etl-worker", "--role", "worker", "--pool", "etl", key=admin)
        assert created.returncode == 0, created.stderr
        worker_key = created.stdout.strip().splitlines()[-1]
        operator = shiftboss(env, "api-key", "create", "ci", "--role", "operator", "-o", "json", key=admin)
        operator_key = json.loads(operator.stdout)["key"]

        denied = shiftboss(env, "work-pool", "create", "ml", "--type", "process", key=operator_key)
        assert denied.returncode == 1
        assert "API key 'ci' has role operator; CreateWorkPool needs an admin key" in denied.stderr
        project = tmp_path / "project"
        (project / "flows").mkdir(parents=True)
        (project / "flows" / "hello.py").write_text(FLOW)
        out = tmp_path / "said.txt"
        deployed = shiftboss(
            env, "deployment", "create", "hello", "--pool", "etl", "--entrypoint", "flows/hello.py:hello",
            "--param", f"out={out}", key=operator_key,
        )
        assert deployed.returncode == 0, deployed.stderr
        assert shiftboss(env, "deployment", "run", "hello", key=operator_key).returncode == 0

        worker_env = {**env, "SHIFTBOSS_API_KEY": worker_key}
        code, output = WorkerProcess(["-p", "etl", "--run-once"], project, worker_env).finish()
        assert code == 0, output
        assert out.read_text() == "hello"

        code, output = WorkerProcess(["-p", "ml", "-t", "process", "--run-once"], project, worker_env).finish()
        assert code == 1, output
        assert "worker key 'etl-worker' is bound to work pool 'etl' and may not serve 'ml'" in output
        listed = json.loads(shiftboss(env, "work-pool", "ls", "-o", "json", key=admin).stdout)
        assert [p["name"] for p in listed] == ["etl"]

        assert shiftboss(env, "api-key", "revoke", "etl-worker", key=admin).returncode == 0
        code, output = WorkerProcess(["-p", "etl", "--run-once"], project, worker_env).finish()
        assert code == 1 and "API key 'etl-worker' was revoked" in output
    finally:
        server.stop()


def test_exposed_address_is_refused_without_auth_or_tls_unless_insecure(tmp_path: Path) -> None:
    env = base_env(tmp_path / "home")
    refused = subprocess.run(
        [str(BIN), "server", "start", "--host", "0.0.0.0", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "refusing to serve 0.0.0.0 with neither auth nor client certificates" in refused.stderr
    server = ServerProcess(tmp_path / "home", env, args=["--host", "0.0.0.0", "--insecure"]).start()
    try:
        assert any("WARNING: --insecure" in line for line in server.lines)
    finally:
        server.stop()


def test_an_unreadable_ca_bundle_is_named_by_the_cli(tmp_path: Path) -> None:
    env = base_env(tmp_path / "home", SHIFTBOSS_TLS_CA_FILE=str(tmp_path / "missing.pem"))
    done = shiftboss(env, "work-pool", "ls")
    assert done.returncode == 1
    assert "SHIFTBOSS_TLS_CA_FILE: cannot read" in done.stderr and "Traceback" not in done.stderr
