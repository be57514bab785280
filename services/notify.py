"""Notices between the server processes on one PostgreSQL database: LISTEN and NOTIFY.

Several `shiftboss server start` processes may share one PostgreSQL database (replicas,
see scheduler/ownership.py). What one of them changes, the others learn within
milliseconds: the process that commits a change sends a notice on a channel (`notify`),
and every process listening on that channel gets it (`listen`), its own included; each
notice names the process it came from (`ORIGIN`), so a handler can skip its own.

One connection per database and process listens, on every channel asked for. When it
is lost (a database restart), it is made again with backoff, and the handlers' `resync`
callbacks run once it is back: notices sent meanwhile are lost, so whoever keeps state
from them reads it again. SQLite has no notices: a single server needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("shiftboss.server")

#: This process, as notices name it unless the sender names itself.
ORIGIN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def new_origin() -> str:
    """A name of its own for one sender in this process (two meshes in one test process)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
#: Longest payload PostgreSQL takes in one notice is 8000 bytes; ours stay well under it.
MAX_PAYLOAD = 7000
#: Seconds between checks that the listening connection still answers.
PING_SECONDS = 5.0

Handler = Callable[[dict[str, Any]], None]


class Listener:
    """One LISTEN connection to a database, shared by the services of this process."""

    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.handlers: dict[str, list[Handler]] = {}
        self.resyncs: list[Callable[[], None]] = []
        self.connection: Any = None
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.users = 0

    async def listen(self, channel: str, handler: Handler, resync: Callable[[], None] | None = None) -> None:
        """Call `handler` with every notice on `channel` (as a dict); `resync` after the
        connection was lost and made again. Returns once the process listens."""
        new = channel not in self.handlers
        self.handlers.setdefault(channel, []).append(handler)
        if resync is not None:
            self.resyncs.append(resync)
        if self.task is None:
            self.task = asyncio.create_task(self._hold(), name="notices")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 10)
        if new and self.connection is not None and not self.connection.is_closed():
            with contextlib.suppress(Exception):
                await self.connection.add_listener(channel, self._received)

    def _received(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            notice = json.loads(payload)
        except ValueError:
            return
        for handler in list(self.handlers.get(channel, ())):
            try:
                handler(notice)
            except Exception:  # one handler's failure is its own
                log.exception("a notice on %s could not be handled", channel)

    async def _hold(self) -> None:
        import asyncpg

        delay = 0.1
        first = True
        while True:
            lost = asyncio.Event()
            try:
                self.connection = await asyncpg.connect(self.dsn, timeout=10)
                self.connection.add_termination_listener(lambda _c: lost.set())
                for channel in self.handlers:
                    await self.connection.add_listener(channel, self._received)
                self.connected.set()
                delay = 0.1
                if not first:
                    log.info("notices: listening again")
                    for resync in list(self.resyncs):
                        with contextlib.suppress(Exception):
                            resync()
                first = False
                while not lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_SECONDS)
                    if not lost.is_set():
                        await asyncio.wait_for(self.connection.fetchval("SELECT 1"), PING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database went away: listen again
                log.warning("notices: connection lost, listening again in %.1fs: %s", delay, exc)
            self.connected.clear()
            if self.connection is not None:
                with contextlib.suppress(Exception):
                    self.connection.terminate()
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 2)
            self.connection = None


_LISTENERS: dict[str, Listener] = {}


def listener_for(url: str) -> Listener:
    """The process's listener on this database (see `release`)."""
    listener = _LISTENERS.get(url)
    if listener is None:
        listener = _LISTENERS[url] = Listener(url)
    listener.users += 1
    return listener


async def release(listener: Listener) -> None:
    listener.users -= 1
    if listener.users <= 0:
        _LISTENERS.pop(next((u for u, l in _LISTENERS.items() if l is listener), ""), None)
        await listener.close()


async def notify(db: Any, channel: str, notice: dict[str, Any], origin: str = ORIGIN) -> None:
    """Send a notice on `channel` to every process listening on this database (after the
    caller's change committed: a notice is about something done), naming its `origin`
    (this process, or one service in it). PostgreSQL only."""
    async with db.driver() as connection:
        await connection.execute("SELECT pg_notify($1, $2)", channel, payload(notice, origin))


def payload(notice: dict[str, Any], origin: str = ORIGIN) -> str:
    """A notice as it is sent (to send it inside a transaction of one's own: pg_notify)."""
    return json.dumps({**notice, "origin": origin}, separators=(",", ":"))


def chunks(items: list[Any], size_of: Callable[[Any], int], budget: int = MAX_PAYLOAD) -> list[list[Any]]:
    """Items split so that each part's notice stays under PostgreSQL's limit."""
    parts: list[list[Any]] = [[]]
    used = 0
    for item in items:
        size = size_of(item)
        if parts[-1] and used + size > budget:
            parts.append([])
            used = 0
        parts[-1].append(item)
        used += size
    return [p for p in parts if p]
