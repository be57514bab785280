"""The generated CLI, run as a real command against a real server process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_work_pool_lifecycle(cli) -> None:  # type: ignore[no-untyped-def]
    name = unique("pool")
    created = cli("work-pool", "create", name, "--type", "process", "--concurrency-limit", "5", "-o", "json")
    assert created.code == 0, created.err
    pool = json.loads(created.out)
    assert pool["name"] == name and pool["type"] == "process" and pool["concurrency_limit"] == 5
    assert pool["status"] == "NOT_READY" and pool["paused"] is False and pool["description"] == ""
    assert pool["base_job_template"]["variables"]["type"] == "object"

    listed = json.loads(cli("work-pool", "ls", "-o", "json").out)
    assert name in [p["name"] for p in listed]
    table = cli("work-pool", "ls")
    assert table.code == 0 and name in table.out

    assert cli("work-pool", "pause", name).out.strip() == f"Paused work pool '{name}'"
    assert json.loads(cli("work-pool", "inspect", name, "-o", "json").out)["status"] == "PAUSED"
    assert cli("work-pool", "resume", name).code == 0
    assert cli("work-pool", "set-concurrency-limit", name, "3").code == 0
    assert json.loads(cli("work-pool", "inspect", name, "-o", "json").out)["concurrency_limit"] == 3
    assert cli("work-pool", "clear-concurrency-limit", name).code == 0
    inspected = json.loads(cli("work-pool", "inspect", name, "-o", "json").out)
    assert inspected["concurrency_limit"] is None
    assert cli("work-pool", "update", name, "--description", "nightly jobs").code == 0
    assert json.loads(cli("work-pool", "inspect", name, "-o", "json").out)["description"] == "nightly jobs"
    assert cli("work-pool", "delete", name).out.strip() == f"Deleted work pool '{name}'"
    gone = cli("work-pool", "inspect", name)
    assert gone.code == 1 and f"work pool '{name}' not found" in gone.err


def test_work_queue_commands(cli) -> None:  # type: ignore[no-untyped-def]
    pool = unique("qpool")
    assert cli("work-pool", "create", pool, "--type", "process").code == 0
    for queue in ("A", "B"):
        assert cli("work-queue", "create", queue, "--pool", pool).code == 0
    created = cli("work-queue", "create", "C", "-p", pool, "--priority", "2", "--limit", "4", "-d", "urgent", "-o", "json")
    assert created.code == 0, created.err
    assert json.loads(created.out) | {} == json.loads(created.out)
    queue = json.loads(created.out)
    assert (queue["name"], queue["pool"], queue["priority"], queue["concurrency_limit"], queue["description"]) == ("C", pool, 2, 4, "urgent")
    listed = json.loads(cli("work-queue", "ls", "--pool", pool, "-o", "json").out)
    assert [(q["name"], q["priority"]) for q in listed] == [("default", 1), ("C", 2), ("A", 3), ("B", 4)]
    assert cli("work-queue", "pause", "A", "--pool", pool).code == 0
    assert json.loads(cli("work-queue", "inspect", "A", "--pool", pool, "-o", "json").out)["status"] == "PAUSED"
    assert cli("work-queue", "resume", "A", "--pool", pool).code == 0
    assert cli("work-queue", "set-concurrency-limit", "A", "2", "--pool", pool).code == 0
    assert json.loads(cli("work-queue", "inspect", "A", "--pool", pool, "-o", "json").out)["concurrency_limit"] == 2
    assert cli("work-queue", "clear-concurrency-limit", "A", "--pool", pool).code == 0
    assert cli("work-queue", "update", "B", "--pool", pool, "--priority", "1").code == 0
    listed = json.loads(cli("work-queue", "ls", "--pool", pool, "-o", "json").out)
    assert [(q["name"], q["priority"]) for q in listed] == [("B", 1), ("default", 2), ("C", 3), ("A", 4)]
    assert "Work queues" in cli("work-queue", "ls", "--pool", pool).out
    assert cli("work-queue", "delete", "A", "--pool", pool).code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["work-pool", "create", "bad/name", "--type", "process"], "name: 'bad/name' contains '/'"),
        (["work-pool", "create", "x", "--type", "k8s"], "type: unknown work pool type 'k8s'"),
        (["work-pool", "create", "x", "--type", "process", "--concurrency-limit", "-1"], "concurrency_limit: must be at least 1, got -1"),
        (["work-pool", "inspect", "missing-pool"], "work pool 'missing-pool' not found"),
        (["work-queue", "delete", "default", "--pool", "shared-pool"], "work queue 'default' of work pool 'shared-pool' cannot be deleted"),
        (["work-queue", "create", "q", "--pool", "shared-pool", "--priority", "0"], "priority: must be a positive integer"),
        (["work-queue", "inspect", "nope", "--pool", "shared-pool"], "work queue 'nope' not found in work pool 'shared-pool'"),
    ],
)
def test_bad_input_prints_the_servers_message_and_exits_non_zero(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    cli("work-pool", "create", "shared-pool", "--type", "process")
    result = cli(*args)
    assert result.code == 1
    assert message in result.err
    assert result.err.startswith("Error: ")


def test_duplicate_pool(cli) -> None:  # type: ignore[no-untyped-def]
    name = unique("dup")
    assert cli("work-pool", "create", name, "--type", "process").code == 0
    again = cli("work-pool", "create", name, "--type", "process")
    assert again.code == 1 and f"work pool '{name}' already exists" in again.err


def test_wrong_types_are_refused_before_any_call(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("work-pool", "create", "x", "--type", "process", "--concurrency-limit", "many")
    assert result.code == 2 and "'many' is not a valid integer" in result.err


def test_server_not_running_says_where_it_tried(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("work-pool", "ls", address="127.0.0.1:1")
    assert result.code == 1
    assert "cannot reach the shiftboss server at 127.0.0.1:1" in result.err


def test_base_job_template_file_bad_json(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    result = cli("work-pool", "create", unique("t"), "--type", "process", "--base-job-template", str(bad))
    assert result.code == 2 and "is not valid JSON" in result.err
    missing = cli("work-pool", "create", unique("t"), "--type", "process", "--base-job-template", str(tmp_path / "nope.json"))
    assert missing.code == 2 and "no such file" in missing.err


def test_default_template_and_render_commands(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    printed = cli("work-pool", "get-default-base-job-template", "--type", "kubernetes")
    assert printed.code == 0
    template = json.loads(printed.out)
    assert template["job_configuration"]["job_manifest"]["kind"] == "Job"
    target = tmp_path / "k8s.json"
    written = cli("work-pool", "get-default-base-job-template", "--type", "docker", "--file", str(target))
    assert written.code == 0 and "image" in json.loads(target.read_text())["variables"]["properties"]
    bad_type = cli("work-pool", "get-default-base-job-template", "--type", "k8s")
    assert bad_type.code == 1 and "type: unknown work pool type 'k8s'" in bad_type.err

    name = unique("render")
    assert cli("work-pool", "create", name, "--type", "docker", "--base-job-template", str(target)).code == 0
    rendered = cli("work-pool", "render", name, "--deployment-variables", '{"image": "app:1", "env": {"A": "1"}}', "--run-variables", '{"env": {"B": "2"}}')
    assert rendered.code == 0, rendered.err
    config = json.loads(rendered.out)
    assert config["image"] == "app:1" and config["env"] == {"A": "1", "B": "2"}
    full = json.loads(cli("work-pool", "render", name, "-o", "json").out)
    assert set(full) == {"job_configuration", "values", "secret_variables"}
    unknown = cli("work-pool", "render", name, "--run-variables", '{"imag": "x"}')
    assert unknown.code == 1 and "unknown variable 'imag'" in unknown.err
    not_json = cli("work-pool", "render", name, "--run-variables", "{oops")
    assert not_json.code == 2 and "is not valid JSON" in not_json.err

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"job_configuration": {"image": "{{ imag }}"}, "variables": {"type": "object", "properties": {}}}))
    refused = cli("work-pool", "create", unique("broken"), "--type", "docker", "--base-job-template", str(broken))
    assert refused.code == 1 and "placeholder '{{ imag }}' is not declared" in refused.err
