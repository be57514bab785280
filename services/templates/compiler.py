"""Base job templates: validated and compiled once, rendered many times.

A template is `{"job_configuration": {...}, "variables": {JSON Schema}}`. Compiling it
checks the schema against the Draft 2020-12 meta-schema, checks that every placeholder
is declared, turns the configuration into a render plan (no text scanning at render
time) and prepares one jsonschema validator. `compile_template` caches the result by
the template's content, so the dispatch path never repeats that work.

Merging (Prefect's rules): schema defaults (a null default is none), then the deployment's
job variables, then the run's; `env` merges key by key, every other variable is replaced
whole; a dot-delimited key (`"env.A": "1"`) sets one key inside a variable; an `env`
object written out in job_configuration keeps its keys under the variable's. How
placeholders render is in plan.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from shiftboss.errors import InvalidArgument
from shiftboss.services.templates.plan import MISSING, field_path, plan, render

#: Variables whose objects merge key by key across defaults, deployment and run.
MERGED_OBJECTS = frozenset({"env"})
CACHE_SIZE = 256


# ---------------------------------------------------------------- compiled templates

@dataclass(slots=True)
class CompiledTemplate:
    template: dict[str, Any]
    variables: tuple[str, ...]
    placeholders: tuple[str, ...]
    defaults: dict[str, Any]
    plan: Any
    validator: Draft202012Validator = field(repr=False)
    #: Variables whose values are secret ("format": "password" or "writeOnly": true).
    secrets: frozenset[str] = frozenset()
    #: job_configuration.env is an object written out, not a placeholder
    literal_env: bool = False

    def merge(
        self,
        deployment_variables: dict[str, Any] | None = None,
        run_variables: dict[str, Any] | None = None,
        leave_required: bool = False,
    ) -> dict[str, Any]:
        """Defaults < deployment < run; `env` merges key by key, all else is replaced whole.
        `leave_required`: a required variable may be missing (a deployment's, left to its runs)."""
        declared = set(self.variables)
        problems = []
        for source, given in (("deployment job_variables", deployment_variables), ("run job_variables", run_variables)):
            for name in given or {}:
                if _root(name, declared) not in declared:
                    problems.append(
                        f"{source}: unknown variable {name!r} (declared: {', '.join(sorted(declared)) or 'none'})"
                    )
        if problems:
            raise InvalidArgument("; ".join(problems), field="job_variables", details=problems)
        values = copy.deepcopy(self.defaults)
        for given in (deployment_variables or {}, run_variables or {}):
            for name, value in expand_dotted(given, declared).items():
                if name in MERGED_OBJECTS and isinstance(value, dict) and isinstance(values.get(name), dict):
                    values[name] = {**values[name], **value}
                else:
                    values[name] = value
        present = {k: v for k, v in values.items() if v is not None}
        errors = sorted(self.validator.iter_errors(present), key=lambda e: list(e.absolute_path))
        if leave_required:
            errors = [e for e in errors if e.validator != "required"]
        if errors:
            found = [f"job_variables.{field_path(list(e.absolute_path)) or '(root)'}: {self._message(e)}" for e in errors]
            raise InvalidArgument("; ".join(found), field="job_variables", details=found)
        return values

    def _message(self, error: Any) -> str:
        """What is wrong with a value; for a secret, without the value."""
        if error.absolute_path and error.absolute_path[0] in self.secrets:
            return f"the secret value does not fit its schema ({error.validator} {error.validator_value!r})"
        return error.message

    def render(self, deployment_variables: dict[str, Any] | None = None, run_variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.render_values(self.merge(deployment_variables, run_variables))

    def render_values(self, values: dict[str, Any]) -> dict[str, Any]:
        rendered = render(self.plan, values)
        if rendered is MISSING:
            return {}
        env = values.get("env")
        if self.literal_env and isinstance(env, dict) and isinstance(rendered.get("env"), dict):
            # Prefect's rule for an `env` object written in the configuration: its keys,
            # then the variable's (default < deployment < run), which win.
            rendered["env"] = {**rendered["env"], **copy.deepcopy(env)}
        return rendered


def _root(name: str, declared: set[str]) -> str:
    return name if name in declared or "." not in name else name.split(".", 1)[0]


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _deep_merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def expand_dotted(given: dict[str, Any], declared: set[str]) -> dict[str, Any]:
    """Prefect's dot-delimited job variables: `{"env.A": "1"}` sets key A of `env`. A key
    written nested wins over the same key written dotted."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if _root(key, declared) != key:
            node = out
            *parents, last = key.split(".")
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[last] = copy.deepcopy(value)
    for key, value in given.items():
        if _root(key, declared) == key:
            nested = out.get(key)
            out[key] = _deep_merge(nested, value) if isinstance(nested, dict) and isinstance(value, dict) else copy.deepcopy(value)
    return out


def is_secret(spec: Any) -> bool:
    """Whether a variable's schema marks its value secret."""
    return isinstance(spec, dict) and (spec.get("format") == "password" or spec.get("writeOnly") is True)


def validate_template(template: Any, *, check_schema: bool = True) -> CompiledTemplate:
    """Check a template and compile it; every problem is reported at once. `check_schema`:
    check `variables` against JSON Schema's meta-schema too (a stored template was)."""
    problems: list[str] = []
    if not isinstance(template, dict):
        raise InvalidArgument("base_job_template: must be a JSON object", field="base_job_template")
    extra = sorted(set(template) - {"job_configuration", "variables"})
    if extra:
        problems.append(f"base_job_template: unknown keys {', '.join(extra)} (expected job_configuration and variables)")
    configuration = template.get("job_configuration")
    variables = template.get("variables")
    if not isinstance(configuration, dict):
        problems.append("base_job_template.job_configuration: must be a JSON object")
    if not isinstance(variables, dict):
        problems.append("base_job_template.variables: must be a JSON object (a JSON Schema)")
    if problems:
        raise InvalidArgument("; ".join(problems), field="base_job_template", details=problems)
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in sorted(meta.iter_errors(variables) if check_schema else (), key=lambda e: list(e.absolute_path)):
        where = field_path(["base_job_template", "variables", *error.absolute_path])
        problems.append(f"{where}: {error.message}")
    if variables.get("type") != "object":
        problems.append("base_job_template.variables.type: must be 'object'")
    properties = variables.get("properties")
    if not isinstance(properties, dict):
        problems.append("base_job_template.variables.properties: must be an object declaring the variables")
        properties = {}
    used: set[str] = set()
    compiled_plan = plan(configuration, set(properties), ["job_configuration"], used, problems)
    if problems:
        raise InvalidArgument("; ".join(problems), field="base_job_template", details=problems)
    # A null default counts as no default (Prefect's rule): its placeholders drop their keys.
    defaults = {
        name: copy.deepcopy(spec["default"])
        for name, spec in properties.items()
        if isinstance(spec, dict) and spec.get("default") is not None
    }
    validator = Draft202012Validator(variables)
    # A default its own schema refuses would fail every deployment of the pool with an error
    # about a value its user never gave: refused here, naming the variable. (What is
    # required may be left to the deployment or the run.)
    for error in sorted(validator.iter_errors(defaults), key=lambda e: list(e.absolute_path)):
        if error.validator != "required" and error.absolute_path:
            where = field_path(["base_job_template", "variables", "properties", error.absolute_path[0], "default", *list(error.absolute_path)[1:]])
            problems.append(f"{where}: {error.message}")
    secrets = frozenset(name for name, spec in properties.items() if is_secret(spec))
    for name in sorted(secrets & set(defaults)):
        problems.append(
            f"base_job_template.variables.properties.{name}.default: a secret variable has no default "
            "(it would be stored and shown in clear); give its value per deployment or run"
        )
    if problems:
        raise InvalidArgument("; ".join(problems), field="base_job_template", details=problems)
    return CompiledTemplate(
        template=template,
        variables=tuple(properties),
        placeholders=tuple(sorted(used)),
        defaults=defaults,
        plan=compiled_plan,
        validator=validator,
        secrets=secrets,
        literal_env=isinstance(configuration.get("env"), dict),
    )


_CACHE: OrderedDict[str, CompiledTemplate] = OrderedDict()


def template_digest(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compile_template(template: Any) -> CompiledTemplate:
    """The compiled template for this content, compiled once and kept (LRU, CACHE_SIZE entries)."""
    key = template_digest(template)
    compiled = _CACHE.get(key)
    if compiled is not None:
        _CACHE.move_to_end(key)
        return compiled
    compiled = _CACHE[key] = validate_template(copy.deepcopy(template))
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled


def naive_render(template: Any, deployment_variables: dict[str, Any] | None = None, run_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything from scratch on every call, the template's schema checked again too."""
    return validate_template(copy.deepcopy(template)).render(deployment_variables, run_variables)


def plain_render(template: Any, deployment_variables: dict[str, Any] | None = None, run_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a renderer without a cache does: walk the template, check the values against the
    variables' schema, substitute. The fair baseline for the cache."""
    return validate_template(template, check_schema=False).render(deployment_variables, run_variables)
