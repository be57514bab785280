"""The event loop long-running commands (`server start`, `worker start`) run on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (not on Windows): under load the event loop's own
    bookkeeping is a good share of a server's or a worker's CPU, and uvloop's is smaller."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
