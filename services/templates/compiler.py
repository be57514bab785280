"""Base job templates: validated and compiled once, rendered many times.

A template is `{"job_configuration": {...}, "variables": {JSON Schema}}`. Compiling it
checks the schema against the Draft 2020-12 meta-schema, checks that every placeholder
is declared, turns the configuration into a render plan (no text scanning at render
time) and prepares one jsonschema validator. `compile_template` caches the result by
the template's content, so the dispatch path never repeats that work.

Rendering rules:
- `"{{ name }}"` as a whole value takes the value with its type; with no value, the key
  (or list item) is dropped.
- A placeholder inside a longer string is substituted as text: strings as they are,
  other values as JSON (`true`, `3`, `{"a": 1}`); with no value it becomes "".
- Names that `variables` does not declare but that contain a dot (`{{ prefect.x }}`,
  `{{ ctx.run_id }}`) belong to the runtime and are left as written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from shiftboss.errors import InvalidArgument

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")
_MISSING = object()
#: Variables whose objects merge key by key across defaults, deployment and run.
MERGED_OBJECTS = frozenset({"env"})
CACHE_SIZE = 256


def _path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# ---------------------------------------------------------------- the render plan

@dataclass(frozen=True, slots=True)
class Whole:
    """A value that is exactly one placeholder."""

    name: str


@dataclass(frozen=True, slots=True)
class Text:
    """A string with placeholders inside: literal parts and names, alternating."""

    parts: tuple[str | Whole, ...]


@dataclass(frozen=True, slots=True)
class Mapping:
    items: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


def _plan(value: Any, declared: set[str], path: list[str | int], used: set[str], problems: list[str]) -> Any:
    if isinstance(value, dict):
        return Mapping(tuple((k, _plan(v, declared, [*path, k], used, problems)) for k, v in value.items()))
    if isinstance(value, list):
        return Sequence(tuple(_plan(v, declared, [*path, i], used, problems) for i, v in enumerate(value)))
    if not isinstance(value, str) or "{{" not in value:
        return Literal(value)
    matches = list(_PLACEHOLDER.finditer(value))
    names = [m.group(1) for m in matches]
    for name in names:
        if name in declared:
            used.add(name)
        elif "." not in name:
            problems.append(
                f"base_job_template.{_path(path)}: placeholder '{{{{ {name} }}}}' is not declared in variables"
            )
    if len(matches) == 1 and matches[0].span() == (0, len(value)) and names[0] in declared:
        return Whole(names[0])
    parts: list[str | Whole] = []
    cursor = 0
    for match in matches:
        parts.append(value[cursor : match.start()])
        name = match.group(1)
        parts.append(Whole(name) if name in declared else match.group(0))
        cursor = match.end()
    parts.append(value[cursor:])
    return Text(tuple(p for p in parts if p != ""))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _render(node: Any, values: dict[str, Any]) -> Any:
    """The rendered value, or _MISSING when a whole placeholder has no value."""
    kind = type(node)
    if kind is Literal:
        return copy.deepcopy(node.value) if isinstance(node.value, (dict, list)) else node.value
    if kind is Whole:
        value = values.get(node.name)
        return _MISSING if value is None else copy.deepcopy(value)
    if kind is Mapping:
        out = {}
        for key, child in node.items:
            rendered = _render(child, values)
            if rendered is not _MISSING:
                out[key] = rendered
        return out
    if kind is Sequence:
        return [r for r in (_render(child, values) for child in node.items) if r is not _MISSING]
    pieces = []
    for part in node.parts:
        if type(part) is Whole:
            value = values.get(part.name)
            pieces.append("" if value is None else _as_text(value))
        else:
            pieces.append(part)
    return "".join(pieces)


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
                if name not in declared:
                    problems.append(
                        f"{source}: unknown variable {name!r} (declared: {', '.join(sorted(declared)) or 'none'})"
                    )
        if problems:
            raise InvalidArgument("; ".join(problems), field="job_variables", details=problems)
        values = copy.deepcopy(self.defaults)
        for given in (deployment_variables or {}, run_variables or {}):
            for name, value in given.items():
                if name in MERGED_OBJECTS and isinstance(value, dict) and isinstance(values.get(name), dict):
                    values[name] = {**values[name], **value}
                else:
                    values[name] = copy.deepcopy(value)
        present = {k: v for k, v in values.items() if v is not None}
        errors = sorted(self.validator.iter_errors(present), key=lambda e: list(e.absolute_path))
        if leave_required:
            errors = [e for e in errors if e.validator != "required"]
        if errors:
            found = [f"job_variables.{_path(list(e.absolute_path)) or '(root)'}: {self._message(e)}" for e in errors]
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
        rendered = _render(self.plan, values)
        return {} if rendered is _MISSING else rendered


def is_secret(spec: Any) -> bool:
    """Whether a variable's schema marks its value secret."""
    return isinstance(spec, dict) and (spec.get("format") == "password" or spec.get("writeOnly") is True)


def validate_template(template: Any) -> CompiledTemplate:
    """Check a template and compile it; every problem is reported at once."""
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
    for error in sorted(meta.iter_errors(variables), key=lambda e: list(e.absolute_path)):
        where = _path(["base_job_template", "variables", *error.absolute_path])
        problems.append(f"{where}: {error.message}")
    if variables.get("type") != "object":
        problems.append("base_job_template.variables.type: must be 'object'")
    properties = variables.get("properties")
    if not isinstance(properties, dict):
        problems.append("base_job_template.variables.properties: must be an object declaring the variables")
        properties = {}
    used: set[str] = set()
    plan = _plan(configuration, set(properties), ["job_configuration"], used, problems)
    if problems:
        raise InvalidArgument("; ".join(problems), field="base_job_template", details=problems)
    defaults = {
        name: copy.deepcopy(spec["default"])
        for name, spec in properties.items()
        if isinstance(spec, dict) and "default" in spec
    }
    validator = Draft202012Validator(variables)
    # A default its own schema refuses would fail every deployment of the pool with an error
    # about a value its user never gave: refused here, naming the variable. (What is
    # required may be left to the deployment or the run.)
    present = {k: v for k, v in defaults.items() if v is not None}
    for error in sorted(validator.iter_errors(present), key=lambda e: list(e.absolute_path)):
        if error.validator != "required" and error.absolute_path:
            where = _path(["base_job_template", "variables", "properties", error.absolute_path[0], "default", *list(error.absolute_path)[1:]])
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
        plan=plan,
        validator=validator,
        secrets=secrets,
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
    """Everything from scratch on every call: the baseline the cache is measured against."""
    return validate_template(copy.deepcopy(template)).render(deployment_variables, run_variables)
