"""Secret job variables: sealed at rest, masked in every reply, clear only in a Dispatch.

A variable of the pool's template marked `"format": "password"` or `"writeOnly": true` is
secret (TemplateService names them with each rendering). Its value is stored sealed, as
`{"$sealed": "<token>"}`, in the deployment's and the run's job variables. A run with any
secret keeps its job configuration sealed whole, beside a copy to show in which every
secret value reads `********`; the worker gets the clear configuration with the values to
mask in the run's logs. A value of `********` sent back (a document read and applied
again) keeps the secret stored before.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from shiftboss.errors import InvalidArgument

from shiftboss.services.sealing import Seal

__all__ = ["MASK", "check_unsealed", "masked", "open_configuration", "open_variables", "seal_configuration", "seal_variables", "shown_configuration", "shown_variables"]

MASK = "********"
SEALED = "$sealed"
SHOWN = "$shown"


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def check_unsealed(variables: dict[str, Any]) -> None:
    """Refuse a value shaped like a sealed one: that shape is the store's own."""
    for name, value in variables.items():
        if _is_sealed(value):
            raise InvalidArgument(
                f"job_variables.{name}: an object whose only key is {SEALED!r} is reserved for stored secrets",
                field="job_variables",
            )


def seal_variables(seal: Seal, secrets: Collection[str], variables: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variables as stored: each secret's value sealed. A secret equal to the one stored
    `before`, or sent back as MASK, keeps its sealed value, so applying a document again
    changes nothing."""
    if not secrets:
        return variables
    stored = dict(variables)
    for name in set(secrets) & set(variables):
        value, prior = variables[name], (before or {}).get(name)
        if _is_sealed(prior) and (value == MASK or seal.open(prior[SEALED]) == value):
            stored[name] = prior
        elif value is not None:
            stored[name] = {SEALED: seal.seal(value)}
    return stored


def open_variables(seal: Seal, variables: dict[str, Any]) -> dict[str, Any]:
    """The variables with their clear values, for rendering."""
    if not any(_is_sealed(v) for v in variables.values()):
        return variables
    return {k: seal.open(v[SEALED]) if _is_sealed(v) else v for k, v in variables.items()}


def shown_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """The variables as a reply shows them."""
    if not any(_is_sealed(v) for v in variables.values()):
        return variables
    return {k: MASK if _is_sealed(v) else v for k, v in variables.items()}


def masked(value: Any, secrets: list[Any]) -> Any:
    """`value` with every secret (and every text holding one) masked."""
    texts = sorted({s if isinstance(s, str) else _text(s) for s in secrets if s not in (None, "")}, key=len, reverse=True)
    whole = [s for s in secrets if not isinstance(s, str)]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for text in texts:
                node = node.replace(text, MASK)
            return node
        if any(node == s and type(node) is type(s) for s in whole):
            return MASK
        return node

    return walk(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def secret_texts(secrets: list[Any]) -> list[str]:
    """The texts a worker masks in a run's log lines."""
    return sorted({_text(s) for s in secrets if s not in (None, "")}, key=len, reverse=True)


def seal_configuration(seal: Seal, configuration: dict[str, Any], secrets: list[Any]) -> dict[str, Any]:
    """The job configuration as stored: sealed whole when the run has secrets."""
    if not secrets:
        return configuration
    return {
        SEALED: seal.seal({"configuration": configuration, "masked": secret_texts(secrets)}),
        SHOWN: masked(configuration, secrets),
    }


def open_configuration(seal: Seal | None, stored: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(clear job configuration, texts to mask in logs) of a run as stored."""
    if seal is None or not isinstance(stored.get(SEALED), str):
        return stored, []
    opened = seal.open(stored[SEALED])
    return opened["configuration"], opened["masked"]


def shown_configuration(stored: dict[str, Any]) -> dict[str, Any]:
    """The job configuration as a reply shows it."""
    return stored[SHOWN] if isinstance(stored.get(SEALED), str) else stored
