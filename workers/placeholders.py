"""`{{ $VAR }}` in a job configuration: an environment variable of the worker that runs the
flow. TemplateService leaves these as written; the worker fills them just before it starts
the run, as Prefect's worker does when it builds its job configuration. A variable the
worker does not have becomes "", in a whole value as in a longer string."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def fill_environment(value: Any, environ: Mapping[str, str]) -> Any:
    """`value` with every `{{ $VAR }}` replaced by the variable's value in `environ`."""
    if isinstance(value, dict):
        return {key: fill_environment(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_environment(item, environ) for item in value]
    if isinstance(value, str) and "{{" in value:
        return ENV_PLACEHOLDER.sub(lambda match: environ.get(match.group(1), ""), value)
    return value
