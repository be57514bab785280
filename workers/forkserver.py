"""`python -m shiftboss.workers.forkserver`: warm starts for the process backend.

A worker starts one of these (workers/warm.py): it imports the run launcher, and the
modules the worker is told to preload, once; then for each run it forks a child that is
at once what `python -m shiftboss.workers.execute` would be after its imports, with the
run's own environment, working directory and output pipes, in a process group of its own
(so cancelling kills it and whatever it started, as for a cold start).

The worker talks to it over a Unix socket it inherits (fd in SHIFTBOSS_FORKSERVER_FD).
A request is an 8-byte length carrying the run's two output pipes as ancillary data, then
that many bytes of JSON: {"id", "env", "cwd", "entrypoint", "parameters"}. Answers are
JSON lines: {"id", "pid"} once forked (or {"id", "error"}), and {"exited": pid, "status"}
(a raw wait status) when a child ends. It dies with the worker (PR_SET_PDEATHSIG), and
its children die with it.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import traceback
from typing import Any

from shiftboss.workers import execute

HEADER = struct.Struct("!Q")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One request and its file descriptors; None when the worker has gone."""
    data, fds, _, _ = socket.recv_fds(sock, HEADER.size, 2)
    if not data:
        return None
    while len(data) < HEADER.size:
        more = sock.recv(HEADER.size - len(data))
        if not more:
            return None
        data += more
    (length,) = HEADER.unpack(data)
    body = bytearray()
    while len(body) < length:
        chunk = sock.recv(min(length - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), list(fds)


def _child(request: dict[str, Any], fds: list[int], closing: list[int]) -> None:
    """In the forked child: become the run's process, run its flow, exit."""
    code = 1
    try:
        for fd in closing:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()
        _die_with_parent()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in (devnull, *fds):
            os.close(fd)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        code = execute.run(request["entrypoint"], request["parameters"])
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd says a child ended

    def answer(message: dict[str, Any]) -> None:
        sock.sendall(json.dumps(message).encode() + b"\n")

    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                answer({"exited": pid, "status": status})
        if sock in ready:
            received = _receive(sock)
            if received is None:
                return
            request, fds = received
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                answer({"id": request["id"], "error": str(exc)})
                continue
            if pid == 0:
                _child(request, fds, [sock.fileno(), wake_r, wake_w])
            for fd in fds:
                os.close(fd)
            answer({"id": request["id"], "pid": pid})


def main() -> int:
    _die_with_parent()
    worker = os.environ.get("SHIFTBOSS_WORKER_PID")
    if worker and os.getppid() != int(worker):
        return 1
    for name in os.environ.get("SHIFTBOSS_PRELOAD", "").split():
        try:
            importlib.import_module(name)
        except Exception as exc:  # a run that needs it imports it again, and says why it fails
            print(f"shiftboss: could not preload {name!r}: {exc!r}", file=sys.stderr)
    sock = socket.socket(fileno=int(os.environ["SHIFTBOSS_FORKSERVER_FD"]))
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
