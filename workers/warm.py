"""Warm starts: the process backend's runs forked from a fork server (workers/forkserver.py)
that has imported the launcher and the modules to preload once, instead of a new Python
each. A forked run is a ProcessHandle like any other: its own process group, environment,
working directory and pipes, killed and waited for the same way; only its exit status
comes from the fork server, its parent, rather than from a child watcher.

A fork server that dies is started again for the next run; a run that cannot be forked is
started cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
from typing import Any

from shiftboss.workers.forkserver import HEADER

__all__ = ["ForkServer", "ForkedProcess"]


class ForkedProcess:
    """What ProcessHandle needs of a process, for a child of the fork server."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader, exited: asyncio.Future[int]):
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = None
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """The exit code; -SIGKILL when the fork server died first (its children die with it)."""
        try:
            return await asyncio.shield(self._exited)
        except ConnectionError:
            return -signal.SIGKILL


def _code(status: int) -> int:
    """A raw wait status as asyncio reports a child's end: the exit code, or -signal."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


class ForkServer:
    def __init__(self, preload: list[str]) -> None:
        self.preload = preload
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._listener: asyncio.Task[None] | None = None
        self._forked: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, int] = {}  # ends heard before their fork's answer was read
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {
            **os.environ,
            "SHIFTBOSS_FORKSERVER_FD": str(theirs.fileno()),
            "SHIFTBOSS_WORKER_PID": str(os.getpid()),
            "SHIFTBOSS_PRELOAD": " ".join(self.preload),
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shiftboss.workers.forkserver",
            env=env, pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )
        theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._listener = asyncio.create_task(self._listen(ours))

    async def _listen(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pending = b""
        try:
            while True:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._heard(json.loads(line))
        finally:
            self._gone(sock)

    def _heard(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            pid, code = message["exited"], _code(message["status"])
            future = self._forked.pop(pid, None)
            if future is None:
                self._exits[pid] = code
            elif not future.done():
                future.set_result(code)
            return
        answer = self._answers.pop(message["id"], None)
        if answer is not None and not answer.done():
            answer.set_result(message)

    def _gone(self, sock: socket.socket) -> None:
        """The fork server ended: its children went with it (PR_SET_PDEATHSIG)."""
        if self._sock is sock:
            self._sock = None
        sock.close()
        for future in [*self._forked.values(), *self._answers.values()]:
            if not future.done():
                future.set_exception(ConnectionError("the fork server ended"))
        self._forked.clear()
        self._answers.clear()

    async def spawn(self, request: dict[str, Any]) -> ForkedProcess:
        """Fork a run: its two output pipes are made here and handed over."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._sock is None:
                await self._start()
            sock = self._sock
            assert sock is not None
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            request = {**request, "id": next(self._ids)}
            answer: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._answers[request["id"]] = answer
            body = json.dumps(request).encode()
            try:
                socket.send_fds(sock, [HEADER.pack(len(body))], [out_w, err_w])
                await loop.sock_sendall(sock, body)
            except (OSError, BlockingIOError):
                for fd in (out_r, err_r):
                    os.close(fd)
                self._answers.pop(request["id"], None)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
            reply = await answer
        if "error" in reply:
            for fd in (out_r, err_r):
                os.close(fd)
            raise OSError(f"the fork server could not fork: {reply['error']}")
        pid = reply["pid"]
        exited: asyncio.Future[int] = loop.create_future()
        if pid in self._exits:
            exited.set_result(self._exits.pop(pid))
        else:
            self._forked[pid] = exited
        return ForkedProcess(pid, await _reader(out_r), await _reader(err_r), exited)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            with contextlib.suppress(Exception):
                await self._process.wait()


