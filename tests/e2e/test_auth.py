"""A server started with --auth, driven as a user would: the first admin key from the
server's storage, keys from the CLI, and workers that present theirs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from shiftboss.v1 import scheduler_pb2
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


AUDIT = '''import json, os, sys
from shiftboss import Client
from shiftboss.errors import PermissionDenied

def audit(blob: str, worker_key: str):
    print("blob", len(blob))
    print("worker key seen:", worker_key in json.dumps(dict(os.environ)))
    print("secret in env:", os.environ["DB_PASSWORD"])
    print("SHIFTBOSS_MESH_TOKEN" in os.environ, "SHIFTBOSS_SECRET_KEY" in os.environ, repr(os.environ["LEAK"]))
    run = os.environ["SHIFTBOSS_FLOW_RUN_ID"]
    with Client() as client:
        print("own run:", client.get_flow_run(run).id == run)
        client.write_flow_run_logs(run, ["written with the run token"])
        try:
            client.list_flow_runs()
        except PermissionDenied as exc:
            print("list refused:", exc.message.split(";")[0])
'''


def test_a_flow_holds_its_runs_token_not_its_workers_key(tmp_path: Path) -> None:
    """Through real processes: the flow's environment holds a run token (which reaches its
    own run and nothing else) and none of the worker's secrets; a parameter of 900 KiB
    arrives whole; a secret job variable is masked in the run's logs and replies."""
    from shiftboss import Client

    home = tmp_path / "home"
    env = base_env(home)
    admin = shiftboss(env, "server", "create-admin-key", "root").stdout.strip().splitlines()[-1]
    server = ServerProcess(home, env, args=["--auth"]).start()
    try:
        template = {
            # A template that asks for the worker's key gets nothing: $VAR sees what flows see.
            "job_configuration": {"env": {"DB_PASSWORD": "{{ password }}", "LEAK": "{{ $SHIFTBOSS_API_KEY }}"}},
            "variables": {"type": "object", "properties": {"password": {"type": "string", "format": "password"}}},
        }
        with Client(server.address, api_key=admin) as client:
            client.create_work_pool("etl", "process", base_job_template=template)
            worker_key = client.create_api_key("etl-worker", "worker", pool="etl").key
            blob = "x" * (900 * 1024)  # far past what one environment variable can hold (128 KiB)
            client.create_deployment(
                "audit", "etl", "flows/audit.py:audit", parameters={"blob": blob, "worker_key": worker_key},
                job_variables={"password": "s3cr3t-value"},
            )
            run = client.create_flow_run("audit")
            project = tmp_path / "project"
            (project / "flows").mkdir(parents=True)
            (project / "flows" / "audit.py").write_text(AUDIT)
            worker_env = {
                **env, "SHIFTBOSS_API_ADDRESS": server.address, "SHIFTBOSS_API_KEY": worker_key,
                "SHIFTBOSS_MESH_TOKEN": "not-for-flows", "SHIFTBOSS_SECRET_KEY": "not-for-flows-either",
            }
            code, output = WorkerProcess(["-p", "etl", "--run-once"], project, worker_env).finish()
            assert code == 0, output
            finished = client.get_flow_run(run.id)
            assert scheduler_pb2.RunState.Name(finished.state) == "COMPLETED", finished.message
            lines = [line.text for line in client.flow_run_logs(run.id)]
        assert lines[:4] == ["blob 921600", "worker key seen: False", "secret in env: ********", "False False ''"]
        assert "own run: True" in lines and "written with the run token" in lines
        assert "list refused: a run token may call only GetFlowRun, SetFlowRunState, WriteFlowRunLogs, for its own run" in lines
        assert "s3cr3t-value" not in output and worker_key not in output
    finally:
        server.stop()
