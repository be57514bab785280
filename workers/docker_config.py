"""What a docker pool's job configuration asks of a container, as the Engine API takes it.

Plain functions of the run and its rendered configuration, with no daemon: the variables
mean what they mean for the seeds' docker worker (image, command, env, labels, name,
networks, network_mode, volumes, auto_remove, image_pull_policy, mem_limit, privileged,
stream_output). A value of the wrong shape is refused naming its variable, before anything
is created.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shiftboss.workers.infrastructure import RunSpec, flow_environment, parameters_input

#: Labels every container of a run carries: how a worker finds its own after a restart.
LABEL_RUN = "io.shiftboss.flow-run-id"
LABEL_RUN_NAME = "io.shiftboss.flow-run-name"
LABEL_LEASE = "io.shiftboss.lease"
LABEL_POOL = "io.shiftboss.work-pool"
LABEL_WORKER = "io.shiftboss.worker"
LABEL_AUTO_REMOVE = "io.shiftboss.auto-remove"

DEFAULT_COMMAND = ["python", "-m", "shiftboss.workers.execute"]
PULL_POLICIES = ("IfNotPresent", "Always", "Never")
#: The name the host is reached by from a container on a bridge network.
HOST_ALIAS = "host.docker.internal"
_NAME_FIRST = re.compile(r"^[^a-zA-Z0-9]+")
_NAME_REST = re.compile(r"[^a-zA-Z0-9_.-]+")
#: What the worker's environment may hand a container: never the worker's own settings or secrets.
_WORKER_ONLY = ("SHIFTBOSS_WORKER_PID",)


class ConfigurationError(ValueError):
    """A job variable that no container can be made from; the message names it."""


@dataclass(slots=True)
class Container:
    """The container of one run: what `containers.create` takes, and what happens around it."""

    image: str
    pull_policy: str
    auto_remove: bool
    create: dict[str, Any]
    networks: list[str] = field(default_factory=list)


def container_environment(spec: RunSpec) -> dict[str, str]:
    """The flow's environment inside the container: the run's own variables (the template's
    env, the run's identity and entrypoint, its trace context) from `flow_environment`, less
    what the worker's process merely inherited: a container gets none of the worker's
    environment. The API address is the host's as the container reaches it."""
    env = {k: v for k, v in flow_environment(spec).items() if os.environ.get(k) != v and k not in _WORKER_ONLY}
    # Set even when equal to the worker's; null leaves it unset.
    env.update({str(k): str(v) for k, v in (spec.configuration.get("env") or {}).items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    # No standard input reaches the container: the parameters travel in its environment.
    env.pop("SHIFTBOSS_PARAMETERS_STDIN", None)
    env["SHIFTBOSS_PARAMETERS"] = parameters_input(spec).decode()
    return env


def container_address(address: str, network_mode: str | None) -> tuple[str, dict[str, str]]:
    """The scheduler's address as a container sees it, and the hosts entry that makes it so:
    loopback in a container is the container itself, unless it shares the host's network."""
    host = urlsplit(f"//{address}").hostname or ""
    if network_mode in ("host", "none") or host not in ("127.0.0.1", "localhost", "::1"):
        return address, {}
    port = urlsplit(f"//{address}").port
    return f"{HOST_ALIAS}:{port}", {HOST_ALIAS: "host-gateway"}


def container_name(name: str | None, run_id: str) -> str:
    """Docker's rules for a name, from the template's `name` (the run's id when unset); the
    run's id ends it so that two runs never collide."""
    base = _NAME_REST.sub("-", _NAME_FIRST.sub("", name or ""))[:48].strip("-.")
    return f"{base}-{run_id[:8]}" if base else f"shiftboss-{run_id}"


def _strings(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value in (None, "", []):
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{key}: expected a list of strings, got {value!r}")
    return value


def _text(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {value!r}")
    return value


def _command(config: dict[str, Any]) -> list[str]:
    command = config.get("command")
    if command in (None, "", []):
        return list(DEFAULT_COMMAND)
    if isinstance(command, list):
        return [str(part) for part in command]
    try:
        return shlex.split(str(command))
    except ValueError as exc:
        raise ConfigurationError(f"command: {exc} in {command!r}") from None


def _volumes(config: dict[str, Any]) -> list[str]:
    volumes = _strings(config, "volumes")
    for volume in volumes:
        if ":" not in volume:
            raise ConfigurationError(f"volumes: {volume!r} is not local_path:container_path")
    return volumes


def container_for(spec: RunSpec, worker: str, pool: str) -> Container:
    config = spec.configuration
    image = _text(config, "image")
    if image is None:
        raise ConfigurationError("image: no image to run the flow in; set the image job variable")
    pull_policy = _text(config, "image_pull_policy") or "IfNotPresent"
    if pull_policy not in PULL_POLICIES:
        raise ConfigurationError(f"image_pull_policy: {pull_policy!r} is not one of {', '.join(PULL_POLICIES)}")
    network_mode = _text(config, "network_mode")
    networks = _strings(config, "networks")
    auto_remove = config.get("auto_remove") is True
    labels = {str(k): str(v) for k, v in (config.get("labels") or {}).items()}
    labels.update({
        LABEL_RUN: spec.run_id,
        LABEL_RUN_NAME: spec.run_name,
        LABEL_LEASE: str(spec.lease),
        LABEL_POOL: pool,
        LABEL_WORKER: worker,
        LABEL_AUTO_REMOVE: "true" if auto_remove else "false",
    })
    env = container_environment(spec)
    address, extra_hosts = container_address(spec.api_address, network_mode)
    env["SHIFTBOSS_API_ADDRESS"] = address
    create: dict[str, Any] = {
        "command": _command(config),
        "environment": env,
        "labels": labels,
        "name": container_name(_text(config, "name"), spec.run_id),
        "detach": True,
        "init": True,  # signals reach the flow: a process that is PID 1 ignores SIGTERM
        "privileged": config.get("privileged") is True,
    }
    if network_mode:
        create["network_mode"] = network_mode
    elif networks:
        create["network"] = networks[0]  # the first at creation; the others are connected before start
    if extra_hosts:
        create["extra_hosts"] = extra_hosts
    if volumes := _volumes(config):
        create["volumes"] = volumes
    if mem_limit := _text(config, "mem_limit"):
        create["mem_limit"] = mem_limit
    return Container(image, pull_policy, auto_remove, create, networks[1:] if not network_mode else networks)
