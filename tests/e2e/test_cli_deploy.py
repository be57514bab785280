"""`shiftboss deploy` with a shiftboss.yaml, against a real server process."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_deploy_creates_then_updates_all_or_none(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = f"deploy-{uuid.uuid4().hex[:6]}"
    assert cli("work-pool", "create", pool, "--type", "process").code == 0
    first, second = f"{pool}-hourly", f"{pool}-plain"
    write(
        tmp_path / "shiftboss.yaml",
        f"""
        name: project
        prefect-version: 3.0.0
        pull:
          - prefect.deployments.steps.set_working_directory: {{directory: /srv}}
        deployments:
          - name: {first}
            entrypoint: flows/jobs.py:report
            parameters: {{region: eu}}
            tags: [reports]
            work_pool:
              name: {pool}
              work_queue_name: default
              job_variables: {{env: {{LEVEL: debug}}}}
            schedules:
              - cron: "0 * * * *"
                timezone: Europe/Berlin
              - interval: 600
                active: false
          - name: {second}
            entrypoint: flows/jobs.py:other
            pool: {pool}
        """,
    )
    done = cli("deploy", "-o", "json")
    assert done.code == 0, done.err
    applied = json.loads(done.out)
    assert [(a["action"], a["deployment"]["name"]) for a in applied] == [("created", first), ("created", second)]
    hourly = applied[0]["deployment"]
    assert hourly["parameters"] == {"region": "eu"} and hourly["job_variables"] == {"env": {"LEVEL": "debug"}}
    assert [(s["cron"], s["timezone"], s["interval_seconds"], s["paused"]) for s in hourly["schedules"]] == [
        ("0 * * * *", "Europe/Berlin", 0, False),
        ("", "UTC", 600, True),  # an interval has a timezone too: one of a day or more keeps its clock time
    ]
    again = cli("deploy")
    assert again.code == 0 and again.out.count("unchanged") == 2, again.out

    # One good change and one bad deployment: nothing is written, every problem is named.
    write(
        tmp_path / "changed.yaml",
        f"""
        deployments:
          - name: {first}
            entrypoint: flows/jobs.py:report_v2
            pool: {pool}
          - name: {pool}-broken
            entrypoint: nofunction
            pool: {pool}
          - name: {pool}-lost
            entrypoint: a.py:f
            pool: no-such-pool-{pool}
        """,
    )
    refused = cli("deploy", "changed.yaml")
    assert refused.code == 1
    assert "deployments[1].entrypoint: 'nofunction' is not path/to/file.py:function" in refused.err
    assert f"deployments[2]: work pool 'no-such-pool-{pool}' not found" in refused.err
    kept = json.loads(cli("deployment", "inspect", first, "-o", "json").out)
    assert kept["entrypoint"] == "flows/jobs.py:report"
    assert cli("deployment", "inspect", f"{pool}-broken").code == 1

    only = cli("deploy", "changed.yaml", "--name", first, "-o", "json")
    assert only.code == 0, only.err
    updated = json.loads(only.out)[0]
    assert updated["action"] == "updated" and updated["deployment"]["entrypoint"] == "flows/jobs.py:report_v2"
    assert updated["deployment"]["schedules"] == []  # the file declares none now


def test_deploy_file_mistakes_are_named_before_any_call(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(
        tmp_path / "typo.yaml",
        """
        deployments:
          - name: x
            entrypoint: a.py:f
            work_pool: {name: p, wrk: 1}
            schedules: [{interval: yes}]
          - entrypoint: a.py:g
            pool: p
        """,
    )
    done = cli("deploy", "typo.yaml")
    assert done.code == 1
    assert "deployments[0].work_pool.wrk: unknown key; one of job_variables, name, work_queue_name" in done.err
    assert "deployments[0].schedules[0].interval: must be a number of seconds, got bool True" in done.err
    assert "deployments[1].name: required" in done.err
    assert cli("deploy", "missing.yaml").code == 2
    write(tmp_path / "notyaml.yaml", "deployments: [\n")
    broken = cli("deploy", "notyaml.yaml")
    assert broken.code == 2 and "is not valid YAML" in broken.err
    write(tmp_path / "one.yaml", "deployments:\n  - {name: a, entrypoint: 'a.py:f', pool: p}\n")
    picked = cli("deploy", "one.yaml", "-n", "b")
    assert picked.code == 1 and "--name: no deployment 'b' in one.yaml" in picked.err
