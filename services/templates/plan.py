"""The render plan of a job configuration: placeholders found once, filled many times.

Placeholders follow Prefect's templating:
- `"{{ name }}"` as a whole value takes the value with its type: null stays null, and a
  variable with no value at all drops its key (or list item).
- `{{ person.name }}` and `{{ items[0] }}` reach into a declared variable's value; a path
  that leads nowhere counts as no value.
- A placeholder inside a longer string becomes the value's Python text (`True`, `3`,
  `{'a': 1}`), or "" when there is no value.
- `{{ $VAR }}` names an environment variable of the worker: it is left as written here
  and filled by the worker that runs the flow (workers/placeholders.py).
- Names that `variables` does not declare but that contain a dot (`{{ prefect.x }}`,
  `{{ ctx.run_id }}`) belong to the runtime and are left as written.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-\[\]$]+)\s*\}\}")
MISSING: Any = object()
_STEP = re.compile(r"[^.\[\]]+")


def field_path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True, slots=True)
class Whole:
    """A value that is exactly one placeholder: a variable and the path into its value."""

    name: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    """A string with placeholders inside: literal parts and placeholders, in order."""

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


def _reference(name: str, declared: set[str]) -> Whole | None:
    """The variable a placeholder reads, or None when it is not this template's to fill."""
    if name in declared:
        return Whole(name)
    if name.startswith("$"):
        return None
    steps = _STEP.findall(name)
    if steps and steps[0] in declared:
        return Whole(steps[0], tuple(steps[1:]))
    return None


def plan(value: Any, declared: set[str], path: list[str | int], used: set[str], problems: list[str]) -> Any:
    """The plan for `value`; names used are added to `used`, undeclared ones to `problems`."""
    if isinstance(value, dict):
        return Mapping(tuple((k, plan(v, declared, [*path, k], used, problems)) for k, v in value.items()))
    if isinstance(value, list):
        return Sequence(tuple(plan(v, declared, [*path, i], used, problems) for i, v in enumerate(value)))
    if not isinstance(value, str) or "{{" not in value:
        return Literal(value)
    matches = list(PLACEHOLDER.finditer(value))
    references = []
    for match in matches:
        name = match.group(1)
        reference = _reference(name, declared)
        references.append(reference)
        if reference is not None:
            used.add(reference.name)
        elif not name.startswith("$") and "." not in name and "[" not in name:
            problems.append(
                f"base_job_template.{field_path(path)}: placeholder '{{{{ {name} }}}}' is not declared in variables"
            )
    if len(matches) == 1 and matches[0].span() == (0, len(value)) and references[0] is not None:
        return references[0]
    parts: list[str | Whole] = []
    cursor = 0
    for match, reference in zip(matches, references):
        parts.append(value[cursor : match.start()])
        parts.append(reference if reference is not None else match.group(0))
        cursor = match.end()
    parts.append(value[cursor:])
    return Text(tuple(p for p in parts if p != ""))


def lookup(values: dict[str, Any], reference: Whole) -> Any:
    """The value a placeholder reads, or MISSING."""
    value = values.get(reference.name, MISSING)
    for step in reference.path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def render(node: Any, values: dict[str, Any]) -> Any:
    """The rendered value, or MISSING when a whole placeholder has no value."""
    kind = type(node)
    if kind is Literal:
        return copy.deepcopy(node.value) if isinstance(node.value, (dict, list)) else node.value
    if kind is Whole:
        value = lookup(values, node)
        return value if value is MISSING else copy.deepcopy(value)
    if kind is Mapping:
        out = {}
        for key, child in node.items:
            rendered = render(child, values)
            if rendered is not MISSING:
                out[key] = rendered
        return out
    if kind is Sequence:
        return [r for r in (render(child, values) for child in node.items) if r is not MISSING]
    pieces = []
    for part in node.parts:
        if type(part) is Whole:
            value = lookup(values, part)
            pieces.append("" if value is MISSING else str(value))
        else:
            pieces.append(part)
    return "".join(pieces)
