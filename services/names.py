"""Names of pools, queues and keys: the one rule for what a name may hold."""

from __future__ import annotations

from shiftboss.errors import InvalidArgument

MAX_NAME_LENGTH = 255
FORBIDDEN_NAME_CHARACTERS = "/%&<>"


def validate_name(field: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field}: must not be empty", field=field)
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"{field}: {len(value)} characters is longer than the limit of {MAX_NAME_LENGTH}", field=field
        )
    bad = sorted({c for c in value if c in FORBIDDEN_NAME_CHARACTERS or not c.isprintable()})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InvalidArgument(
            f"{field}: {value!r} contains {shown}; names may not hold / % & < > or control characters",
            field=field,
        )
    if value != value.strip():
        raise InvalidArgument(f"{field}: {value!r} has leading or trailing whitespace", field=field)
    return value
