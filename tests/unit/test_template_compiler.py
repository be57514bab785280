"""Base job templates: validation, merging, rendering, and the compile-once cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from shiftboss.errors import InvalidArgument
from shiftboss.services.templates.builtin import DEFAULT_TYPES, default_template
from shiftboss.services.templates.compiler import compile_template, naive_render, validate_template


def template(configuration: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"job_configuration": configuration, "variables": {"type": "object", "properties": properties}}


@pytest.mark.parametrize("pool_type", DEFAULT_TYPES)
def test_defaults_round_trip_leaves_no_placeholder(pool_type: str) -> None:
    rendered = compile_template(default_template(pool_type)).render()
    assert "{{" not in json.dumps(rendered)


def test_default_templates_declare_what_users_expect() -> None:
    process = default_template("process")["variables"]["properties"]
    assert {"command", "env", "labels", "name", "stream_output", "working_dir"} <= set(process)
    assert process["stream_output"]["default"] is True
    docker = default_template("docker")["variables"]["properties"]
    assert {"image", "image_pull_policy", "networks", "network_mode", "auto_remove", "volumes", "mem_limit", "privileged"} <= set(docker)
    kubernetes = default_template("kubernetes")
    props = kubernetes["variables"]["properties"]
    assert {"image", "namespace", "service_account_name", "image_pull_policy", "finished_job_ttl",
            "job_watch_timeout_seconds", "pod_watch_timeout_seconds", "cpu_request", "memory_request"} <= set(props)
    assert kubernetes["job_configuration"]["job_manifest"]["kind"] == "Job"
    for spec in (*process.values(), *props.values()):
        assert {"title", "description", "type"} <= set(spec)


def test_whole_placeholders_keep_their_type() -> None:
    compiled = compile_template(
        template(
            {"n": "{{ n }}", "flag": "{{flag}}", "items": "{{ items }}", "obj": "{{ obj }}", "nested": [{"deep": "{{ n }}"}]},
            n={"type": "integer"}, flag={"type": "boolean"}, items={"type": "array"}, obj={"type": "object"},
        )
    )
    out = compiled.render(None, {"n": 3, "flag": False, "items": [1, "a"], "obj": {"k": [1]}})
    assert out == {"n": 3, "flag": False, "items": [1, "a"], "obj": {"k": [1]}, "nested": [{"deep": 3}]}


def test_prefect_apply_values_missing_drops_the_key_and_null_keeps_it() -> None:
    """Prefect's apply_values: a variable with no value drops its key (NotSet); one given
    as null keeps the key with null. A null default counts as no default."""
    compiled = compile_template(
        template(
            {"image": "{{ image }}", "tag": "repo:{{ image }}", "args": ["{{ image }}", "x"], "pull": "{{ pull }}"},
            image={"type": "string"}, pull={"type": "string", "default": None},
        )
    )
    assert compiled.render() == {"tag": "repo:", "args": ["x"]}
    assert compiled.render(None, {"image": None}) == {"image": None, "tag": "repo:None", "args": [None, "x"]}
    assert compiled.render({"pull": None}) == {"pull": None, "tag": "repo:", "args": ["x"]}


def test_prefect_apply_values_embeds_a_value_as_python_text() -> None:
    compiled = compile_template(
        template(
            {"cmd": "run --n {{ n }} --on {{ flag }} --who {{ who }} --opts {{ opts }}"},
            n={"type": "integer"}, flag={"type": "boolean"}, who={"type": "string"}, opts={"type": "object"},
        )
    )
    out = compiled.render(None, {"n": 2, "flag": True, "who": "me", "opts": {"a": 1}})
    assert out == {"cmd": "run --n 2 --on True --who me --opts {'a': 1}"}


def test_prefect_literal_env_object_merges_under_the_env_variable() -> None:
    """Prefect's from_template_and_values: an `env` object written in job_configuration
    keeps its keys; the `env` variable's default, then the deployment's, then the run's
    win over them key by key."""
    compiled = compile_template(
        template(
            {"env": {"LITERAL": "1", "SHARED": "literal", "WHO": "{{ who }}"}, "command": "{{ command }}"},
            env={"type": "object", "default": {"DEFAULT": "d", "SHARED": "default"}},
            who={"type": "string", "default": "me"},
            command={"type": "string"},
        )
    )
    assert compiled.render() == {"env": {"LITERAL": "1", "SHARED": "default", "WHO": "me", "DEFAULT": "d"}}
    out = compiled.render({"env": {"DEPLOYMENT": "x", "SHARED": "deployment"}}, {"env": {"RUN": "y"}})
    assert out["env"] == {"LITERAL": "1", "SHARED": "deployment", "WHO": "me", "DEFAULT": "d", "DEPLOYMENT": "x", "RUN": "y"}


def test_prefect_dot_delimited_job_variables_set_one_key() -> None:
    compiled = compile_template(default_template("process"))
    out = compiled.render({"env.EXTRA_PIP_PACKAGES": "x", "env": {"A": "1"}}, {"env.B": "2"})
    assert out["env"] == {"EXTRA_PIP_PACKAGES": "x", "A": "1", "B": "2"}
    # the same key written nested wins over it written dotted
    assert compiled.render({"env.A": "dotted", "env": {"A": "nested"}})["env"] == {"A": "nested"}
    with pytest.raises(InvalidArgument, match="deployment job_variables: unknown variable 'nope.A'"):
        compiled.render({"nope.A": "1"})


def test_prefect_dotted_placeholders_reach_into_a_variable() -> None:
    compiled = compile_template(
        template(
            {"who": "{{ person.name }}", "first": "{{ person.tags[0] }}", "greeting": "hi {{ person.name }}", "gone": "{{ person.age }}"},
            person={"type": "object", "default": {"name": "ada", "tags": ["x", "y"]}},
        )
    )
    assert compiled.render() == {"who": "ada", "first": "x", "greeting": "hi ada"}
    assert compiled.placeholders == ("person",)


def test_prefect_env_var_placeholders_are_left_for_the_worker() -> None:
    compiled = compile_template(template({"home": "{{ $HOME }}", "path": "{{ $HOME }}/{{ d }}"}, d={"type": "string", "default": "x"}))
    assert compiled.render() == {"home": "{{ $HOME }}", "path": "{{ $HOME }}/x"}


def test_env_merges_key_by_key_and_others_replace_whole() -> None:
    compiled = compile_template(
        template(
            {"env": "{{ env }}", "labels": "{{ labels }}"},
            env={"type": "object", "default": {"A": "1", "B": "2"}},
            labels={"type": "object", "default": {"team": "a"}},
        )
    )
    out = compiled.render({"env": {"C": "42"}, "labels": {"x": "1"}}, {"env": {"C": "3", "D": "4"}})
    assert out == {"env": {"A": "1", "B": "2", "C": "3", "D": "4"}, "labels": {"x": "1"}}


def test_unknown_job_variable_is_named() -> None:
    compiled = compile_template(default_template("process"))
    with pytest.raises(InvalidArgument, match="run job_variables: unknown variable 'imag'"):
        compiled.render(None, {"imag": "x"})
    with pytest.raises(InvalidArgument, match="deployment job_variables: unknown variable 'cpu'"):
        compiled.render({"cpu": 1})


def test_every_violation_is_reported_at_once_with_its_path() -> None:
    compiled = compile_template(
        template(
            {"a": "{{ count }}"},
            count={"type": "integer", "minimum": 1, "maximum": 5},
            mode={"type": "string", "enum": ["fast", "slow"]},
            tag={"type": "string", "pattern": "^v[0-9]+$"},
            env={"type": "object", "additionalProperties": {"type": "string"}},
        )
    )
    with pytest.raises(InvalidArgument) as caught:
        compiled.render(None, {"count": 9, "mode": "medium", "tag": "latest", "env": {"A": 1}})
    details = caught.value.details
    assert len(details) == 4
    assert any(d.startswith("job_variables.count: 9 is greater than the maximum of 5") for d in details)
    assert any(d.startswith("job_variables.mode: 'medium' is not one of") for d in details)
    assert any(d.startswith("job_variables.tag: 'latest' does not match") for d in details)
    assert any(d.startswith("job_variables.env.A: 1 is not of type 'string'") for d in details)


def test_undeclared_placeholder_is_refused_with_its_path() -> None:
    bad = default_template("kubernetes")
    bad["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"] = "{{ imagee }}"
    with pytest.raises(InvalidArgument) as caught:
        validate_template(bad)
    assert "base_job_template.job_configuration.job_manifest.spec.template.spec.containers[0].image: placeholder '{{ imagee }}' is not declared" in caught.value.message


def test_invalid_schema_is_refused_with_its_path() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_template(template({"x": "{{ x }}"}, x={"type": "strng"}, y={"minimum": "low"}))
    message = caught.value.message
    assert "base_job_template.variables.properties.x.type" in message
    assert "base_job_template.variables.properties.y.minimum" in message


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"job_configuration": {}}, "variables: must be a JSON object"),
        ({"job_configuration": [], "variables": {"type": "object", "properties": {}}}, "job_configuration: must be a JSON object"),
        ({"job_configuration": {}, "variables": {"type": "array", "properties": {}}}, "variables.type: must be 'object'"),
        ({"job_configuration": {}, "variables": {"type": "object"}}, "variables.properties: must be an object"),
        ({"job_configuration": {}, "variables": {"type": "object", "properties": {}}, "extra": 1}, "unknown keys extra"),
    ],
)
def test_template_shape(bad: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(")):
        validate_template(bad)


def test_runtime_dotted_placeholders_are_left_alone() -> None:
    compiled = compile_template(template({"cmd": "{{ ctx.run_id }}-{{ x }}"}, x={"type": "string"}))
    assert compiled.render(None, {"x": "a"}) == {"cmd": "{{ ctx.run_id }}-a"}


def test_cache_compiles_once_per_version() -> None:
    first = default_template("docker")
    assert compile_template(first) is compile_template(default_template("docker"))
    changed = default_template("docker")
    changed["variables"]["properties"]["image"]["default"] = "other"
    assert compile_template(changed) is not compile_template(first)


def test_naive_render_equals_cached_render() -> None:
    t = default_template("kubernetes")
    dep, run = {"image": "repo/app:1", "env": {"A": "1"}}, {"namespace": "jobs", "cpu_request": "500m"}
    assert naive_render(t, dep, run) == compile_template(t).render(dep, run)


@given(value=st.integers() | st.text(max_size=20) | st.booleans() | st.lists(st.integers(), max_size=3))
def test_rendering_preserves_any_value(value: Any) -> None:
    compiled = compile_template(template({"v": "{{ v }}", "in": ["{{ v }}"]}, v={}))
    assert compiled.render(None, {"v": value}) == {"v": value, "in": [value]}


def test_a_default_its_own_schema_refuses_is_refused_naming_the_variable() -> None:
    """A Prefect pool would accept it and fail every deployment; here the template is
    refused when it is saved, with the variable named."""
    template = {
        "job_configuration": {"retries": "{{ retries }}", "env": "{{ env }}"},
        "variables": {
            "type": "object",
            "properties": {
                "retries": {"type": "integer", "default": "hi"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "default": {"A": 1}},
            },
        },
    }
    with pytest.raises(InvalidArgument) as refused:
        validate_template(template)
    assert refused.value.details == [
        "base_job_template.variables.properties.env.default.A: 1 is not of type 'string'",
        "base_job_template.variables.properties.retries.default: 'hi' is not of type 'integer'",
    ]
