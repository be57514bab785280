"""What a docker pool's job configuration makes of a container, before any daemon is asked."""

from __future__ import annotations

import pytest

from shiftboss.workers.docker_config import ConfigurationError, container_address, container_for, container_name
from shiftboss.workers.infrastructure import RunSpec

RUN = "0ede8c38-0b8d-4da9-b13a-27a78f06e20e"


def spec(**configuration: object) -> RunSpec:
    return RunSpec(RUN, "flows/a.py:f", {"x": 1}, {"image": "img:1", **configuration}, "127.0.0.1:4300", run_name="lucky-raven", lease=7)


def test_the_defaults_run_the_launcher_labelled_with_run_and_worker() -> None:
    plan = container_for(spec(), worker="w1", pool="dock")
    assert (plan.image, plan.pull_policy, plan.auto_remove, plan.networks) == ("img:1", "IfNotPresent", False, [])
    create = plan.create
    assert create["command"] == ["python", "-m", "shiftboss.workers.execute"]
    assert create["name"] == f"shiftboss-{RUN}"
    assert create["init"] is True and create["privileged"] is False
    assert create["labels"] == {
        "io.shiftboss.flow-run-id": RUN,
        "io.shiftboss.flow-run-name": "lucky-raven",
        "io.shiftboss.lease": "7",
        "io.shiftboss.work-pool": "dock",
        "io.shiftboss.worker": "w1",
        "io.shiftboss.auto-remove": "false",
    }
    env = create["environment"]
    assert env["SHIFTBOSS_FLOW_RUN_ID"] == RUN and env["SHIFTBOSS_ENTRYPOINT"] == "flows/a.py:f"
    assert "SHIFTBOSS_WORKER_PID" not in env  # the flow must not die for want of the worker as its parent
    assert env["SHIFTBOSS_API_ADDRESS"] == "host.docker.internal:4300"
    assert create["extra_hosts"] == {"host.docker.internal": "host-gateway"}


def test_the_variables_mean_what_they_mean_for_the_docker_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_ONLY", "secret")
    monkeypatch.setenv("SHIFTBOSS_API_KEY", "the-worker-s-own-key")
    monkeypatch.setenv("SAME", "v")
    plan = container_for(
        spec(
            command="python -c 'print(1)'",
            env={"A": "1", "SAME": "v"},
            labels={"team": "data"},
            name="Nightly report!",
            networks=["front", "back"],
            volumes=["/data:/data:ro"],
            auto_remove=True,
            image_pull_policy="Never",
            mem_limit="256m",
            privileged=True,
        ),
        worker="w",
        pool="p",
    )
    create = plan.create
    assert create["command"] == ["python", "-c", "print(1)"]
    assert create["environment"]["A"] == "1" and create["environment"]["SAME"] == "v"
    assert "WORKER_ONLY" not in create["environment"] and "SHIFTBOSS_API_KEY" not in create["environment"]
    assert create["labels"]["team"] == "data" and create["labels"]["io.shiftboss.auto-remove"] == "true"
    assert create["name"] == "Nightly-report-0ede8c38"
    assert create["network"] == "front" and plan.networks == ["back"]
    assert create["volumes"] == ["/data:/data:ro"] and create["mem_limit"] == "256m" and create["privileged"] is True
    assert (plan.auto_remove, plan.pull_policy) == (True, "Never")


def test_host_network_keeps_the_loopback_address() -> None:
    assert container_address("127.0.0.1:4300", "host") == ("127.0.0.1:4300", {})
    assert container_address("scheduler.internal:4300", None) == ("scheduler.internal:4300", {})
    assert container_name("--", RUN) == f"shiftboss-{RUN}"


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        ({"image": ""}, "image: no image to run the flow in"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy: 'Sometimes' is not one of IfNotPresent, Always, Never"),
        ({"volumes": ["data"]}, "volumes: 'data' is not local_path:container_path"),
        ({"networks": "front"}, "networks: expected a list of strings, got 'front'"),
        ({"mem_limit": 512}, "mem_limit: expected a string, got 512"),
        ({"command": "python -c 'unclosed"}, "command: No closing quotation"),
    ],
)
def test_a_bad_variable_is_refused_naming_it(configuration: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        container_for(spec(**configuration), worker="w", pool="p")
