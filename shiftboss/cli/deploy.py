"""`shiftboss deploy [FILE]`: every deployment a `shiftboss.yaml` declares, created or updated at once.

The file keeps the layout of the seeds' `prefect.yaml`, so an existing one works unchanged
for the parts shiftboss has (the build, push and pull steps are not ours and are skipped):

    deployments:
      - name: nightly-report
        entrypoint: flows/report.py:build
        parameters: {region: eu}
        work_pool:
          name: local
          work_queue_name: default
          job_variables: {env: {LOG_LEVEL: debug}}
        schedules:
          - cron: "0 2 * * *"
            timezone: Europe/Berlin
          - interval: 3600
            active: false

Flat `pool`, `queue` and `job_variables` keys work too. The file is checked whole before
anything is sent, and the server applies every deployment in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

from shiftboss._wire import message_to_dict, to_struct
from shiftboss.cli import output
from shiftboss.errors import ShiftbossError
from shiftboss.v1 import scheduler_pb2

#: Keys of a prefect.yaml that describe building and shipping code, which shiftboss leaves to you.
SKIPPED_TOP = {"name", "prefect-version", "build", "push", "pull"}
SKIPPED_DEPLOYMENT = {"version", "build", "push", "pull"}
DEPLOYMENT_KEYS = {"name", "entrypoint", "description", "tags", "parameters", "paused", "work_pool", "pool", "queue",
                   "job_variables", "schedules", "schedule", "retries", "retry_delay_seconds"}
WORK_POOL_KEYS = {"name", "work_queue_name", "job_variables"}
SCHEDULE_KEYS = {"cron", "timezone", "interval", "rrule", "anchor_date", "active", "paused"}


class SpecError(click.ClickException):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))


def _unknown(where: str, value: dict[str, Any], known: set[str], problems: list[str]) -> None:
    for key in sorted(set(value) - known):
        problems.append(f"{where}.{key}: unknown key; one of {', '.join(sorted(known))}")


def _expect(where: str, value: Any, kind: type | tuple[type, ...], what: str, problems: list[str]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):  # YAML's `yes` is no number
        return True
    problems.append(f"{where}: must be {what}, got {type(value).__name__} {value!r}")
    return False


def schedule_spec(where: str, raw: Any, problems: list[str]) -> scheduler_pb2.ScheduleSpec | None:
    if not _expect(where, raw, dict, "a mapping with cron, interval or rrule", problems):
        return None
    _unknown(where, raw, SCHEDULE_KEYS, problems)
    spec = scheduler_pb2.ScheduleSpec()
    if "cron" in raw and _expect(f"{where}.cron", raw["cron"], str, "a cron expression", problems):
        spec.cron = raw["cron"]
    if "timezone" in raw and _expect(f"{where}.timezone", raw["timezone"], str, "a timezone name", problems):
        spec.timezone = raw["timezone"]
    if "interval" in raw and _expect(f"{where}.interval", raw["interval"], (int, float), "a number of seconds", problems):
        spec.interval = float(raw["interval"])
    if "rrule" in raw and _expect(f"{where}.rrule", raw["rrule"], str, "an RRULE", problems):
        spec.rrule = raw["rrule"]
    if "anchor_date" in raw:  # YAML reads an unquoted timestamp as a datetime
        anchor = raw["anchor_date"]
        if _expect(f"{where}.anchor_date", anchor, (str, datetime), "an ISO 8601 date and time", problems):
            spec.anchor_date = anchor.isoformat() if isinstance(anchor, datetime) else anchor
    if "active" in raw and _expect(f"{where}.active", raw["active"], bool, "true or false", problems):
        spec.paused = not raw["active"]
    if "paused" in raw and _expect(f"{where}.paused", raw["paused"], bool, "true or false", problems):
        spec.paused = raw["paused"]
    return spec


def deployment_spec(where: str, raw: Any, problems: list[str]) -> scheduler_pb2.DeploymentSpec | None:
    if not _expect(where, raw, dict, "a mapping", problems):
        return None
    _unknown(where, raw, DEPLOYMENT_KEYS | SKIPPED_DEPLOYMENT, problems)
    spec = scheduler_pb2.DeploymentSpec()
    for key in ("name", "entrypoint", "description", "pool", "queue"):
        if key in raw and _expect(f"{where}.{key}", raw[key], str, "text", problems):
            setattr(spec, key, raw[key])
    for key in ("name", "entrypoint"):
        if not raw.get(key):
            problems.append(f"{where}.{key}: required")
    if "paused" in raw and _expect(f"{where}.paused", raw["paused"], bool, "true or false", problems):
        spec.paused = raw["paused"]
    if "retries" in raw and _expect(f"{where}.retries", raw["retries"], int, "a whole number", problems):
        spec.retries = raw["retries"]
    if "retry_delay_seconds" in raw and _expect(f"{where}.retry_delay_seconds", raw["retry_delay_seconds"], (int, float), "a number of seconds", problems):
        spec.retry_delay_seconds = float(raw["retry_delay_seconds"])
    if "tags" in raw and _expect(f"{where}.tags", raw["tags"], list, "a list of text", problems):
        spec.tags.extend(str(tag) for tag in raw["tags"])
    if raw.get("parameters") is not None and _expect(f"{where}.parameters", raw["parameters"], dict, "a mapping", problems):
        spec.parameters.CopyFrom(to_struct(raw["parameters"]))
    variables = raw.get("job_variables")
    pool = raw.get("work_pool")
    if pool is not None and _expect(f"{where}.work_pool", pool, dict, "a mapping", problems):
        _unknown(f"{where}.work_pool", pool, WORK_POOL_KEYS, problems)
        for key, field in (("name", "pool"), ("work_queue_name", "queue")):
            if pool.get(key) is not None and _expect(f"{where}.work_pool.{key}", pool[key], str, "text", problems):
                setattr(spec, field, pool[key])
        variables = pool.get("job_variables", variables)
    if not spec.pool:
        problems.append(f"{where}.work_pool.name: required")
    if variables is not None and _expect(f"{where}.job_variables", variables, dict, "a mapping", problems):
        spec.job_variables.CopyFrom(to_struct(variables))
    schedules = raw.get("schedules") or ([raw["schedule"]] if raw.get("schedule") else [])
    if _expect(f"{where}.schedules", schedules, list, "a list", problems):
        for i, schedule in enumerate(schedules):
            made = schedule_spec(f"{where}.schedules[{i}]", schedule, problems)
            if made is not None:
                spec.schedules.append(made)
    return spec


def read_specs(path: Path, only: tuple[str, ...]) -> list[scheduler_pb2.DeploymentSpec]:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise click.BadParameter(f"{path}: no such file", param_hint="FILE") from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path} is not valid YAML: {exc}", param_hint="FILE") from None
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("deployments"), list):
        raise SpecError([f"{path}: expected a mapping with a `deployments` list"])
    _unknown(str(path), document, {"deployments"} | SKIPPED_TOP, problems)
    specs = [deployment_spec(f"deployments[{i}]", raw, problems) for i, raw in enumerate(document["deployments"])]
    if problems:
        raise SpecError(problems)
    chosen = [s for s in specs if s is not None and (not only or s.name in only)]
    missing = sorted(set(only) - {s.name for s in chosen})
    if missing:
        raise SpecError([f"--name: no deployment {name!r} in {path}" for name in missing])
    if not chosen:
        raise SpecError([f"{path}: declares no deployment"])
    return chosen


@click.command("deploy")
@click.argument("file", default="shiftboss.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "--name", "names", multiple=True, help="Only this deployment of the file; repeat for several.")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format.")
def deploy(file: Path, names: tuple[str, ...], fmt: str) -> None:
    """Create or update every deployment FILE declares (default: ./shiftboss.yaml), all or none."""
    from shiftboss.cli.telemetry import cli_client

    specs = read_specs(file, names)
    with cli_client() as client:
        try:
            reply = client.apply_deployments(specs)
        except ShiftbossError as exc:
            output.stderr.print(f"Error: {exc.message}", markup=False, highlight=False)
            raise SystemExit(1) from None
    if fmt == "json":
        output.print_json([message_to_dict(applied) for applied in reply.applied])
        return
    output.print_table(
        f"Deployments from {file}",
        ["Name", "Pool", "Queue", "Entrypoint", "Schedules", "Result"],
        [[a.deployment.name, a.deployment.pool, a.deployment.queue, a.deployment.entrypoint, str(len(a.deployment.schedules)), a.action]
         for a in reply.applied],
    )
