"""An open stream's key is checked again on a timer that never spins, however short the
identity cache (SHIFTBOSS_AUTH_CACHE_SECONDS=0 once made the watcher call KeyService in a
tight loop)."""

from __future__ import annotations

import asyncio
from typing import Any

from shiftboss.errors import Unauthenticated
from shiftboss.services.auth import MIN_RECHECK_SECONDS, Authenticator
from shiftboss.v1 import keys_pb2


async def test_a_zero_cache_rechecks_an_open_stream_at_most_once_a_second() -> None:
    loop = asyncio.get_running_loop()
    asked: list[float] = []
    second = asyncio.Event()

    async def call(method: Any, request: Any) -> keys_pb2.Identity:
        asked.append(loop.time())
        if len(asked) == 2:
            second.set()
            raise Unauthenticated("API key 'bot' was revoked")
        return keys_pb2.Identity(name="bot", role=keys_pb2.WORKER, pool="etl")

    authenticator = Authenticator("token", 0.0, call, lambda: type("Keys", (), {"Authenticate": None})())
    ended: list[Unauthenticated] = []
    watcher = asyncio.ensure_future(authenticator.watch("sb_key", [ended.append]))
    await asyncio.wait_for(second.wait(), 10)
    await asyncio.wait_for(watcher, 10)
    assert all(gap >= MIN_RECHECK_SECONDS * 0.9 for gap in (b - a for a, b in zip(asked, asked[1:])))
    assert [e.message for e in ended] == ["API key 'bot' was revoked"]
