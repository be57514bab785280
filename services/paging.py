"""Paging of list calls, as Prefect's `limit` and `offset`: checked alike by every service."""

from __future__ import annotations

from typing import TypeVar

from shiftboss.errors import InvalidArgument

T = TypeVar("T")


def check(limit: int, offset: int) -> None:
    for field, value in (("limit", limit), ("offset", offset)):
        if value < 0:
            raise InvalidArgument(f"{field}: must not be negative, got {value}", field=field)


def page(items: list[T], limit: int, offset: int) -> list[T]:
    """`limit` items from `offset` on; a limit of 0 means all."""
    check(limit, offset)
    return items[offset : offset + limit] if limit else items[offset:]
