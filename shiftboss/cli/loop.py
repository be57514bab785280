"""The event loop `server start` runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (not on Windows): under load the event loop's own
    bookkeeping is a good share of a server's CPU, and uvloop's is smaller. Not a worker's:
    uvloop starts a subprocess with fork(), which runs gRPC's fork handlers in the child
    (asyncio's loop starts it without them), and a flow process could die there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
