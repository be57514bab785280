"""Run one flow: `python -m shiftboss.workers.execute`.

Reads the entrypoint (`path/to/file.py:function` or `package.module:function`) from
SHIFTBOSS_ENTRYPOINT and the parameters (a JSON object) from its standard input when
SHIFTBOSS_PARAMETERS_STDIN is set (as the worker runs it; any size travels), else from
SHIFTBOSS_PARAMETERS; checks
the parameters against the function's signature, calls it (awaiting a coroutine) and
exits 0; any failure exits 1 with the traceback on stderr. It imports nothing of
shiftboss beyond this file and the pure shiftboss.entrypoints, so the flow starts as fast
as Python can.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from shiftboss.entrypoints import admitted


class EntrypointError(Exception):
    """The flow could not be loaded or called as asked."""


def _allowed() -> list[str]:
    """What the worker allows beyond its working directory (SHIFTBOSS_ALLOWED_ENTRYPOINTS,
    one per line): module names (`pkg`, `pkg.flows`), folders, or `*` for anything."""
    return [line.strip() for line in os.environ.get("SHIFTBOSS_ALLOWED_ENTRYPOINTS", "").splitlines() if line.strip()]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_policy(target: str, path: Path | None) -> None:
    """Refuse an entrypoint outside the project: a flow is a file under the working directory,
    or a module found there, or what the worker allows (`--allow-entrypoint`). So an
    operator's `os:system` or a function of an installed package is not run by default.
    The pool's policy, when it has one (SHIFTBOSS_POOL_ENTRYPOINTS), must admit it too."""
    pool = [line.strip() for line in os.environ.get("SHIFTBOSS_POOL_ENTRYPOINTS", "").splitlines() if line.strip()]
    if not admitted(f"{target}:_", pool):
        raise EntrypointError(f"entrypoint {target!r} is not among the entrypoints its work pool allows ({', '.join(pool)})")
    allowed = _allowed()
    if "*" in allowed:
        return
    cwd = Path.cwd().resolve()
    folders = [Path(a).resolve() for a in allowed if "/" in a]
    modules = [a for a in allowed if "/" not in a]
    if path is None:
        if any(target == m or target.startswith(m + ".") for m in modules):
            return
        spec = importlib.util.find_spec(target.partition(".")[0])
        origin = spec.origin if spec is not None else None
        if spec is None:
            raise EntrypointError(f"entrypoint module {target!r} not found (working directory {cwd})")
        if origin in (None, "built-in", "frozen"):
            locations = list(spec.submodule_search_locations or [])
            path = Path(locations[0]).resolve() if locations else None
        else:
            path = Path(origin).resolve()
    if path is not None and any(_under(path, folder) for folder in [cwd, *folders]):
        return
    where = f" ({path})" if path is not None else " (built into Python)"
    raise EntrypointError(
        f"entrypoint {target!r} is outside the project{where}: this worker runs flows under its working directory "
        f"{cwd} and what it allows with --allow-entrypoint"
    )


def load(entrypoint: str) -> Callable[..., Any]:
    target, sep, name = entrypoint.rpartition(":")
    if not sep or not target or not name:
        raise EntrypointError(f"entrypoint {entrypoint!r} is not path/to/file.py:function or package.module:function")
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise EntrypointError(f"entrypoint file {target!r} not found (working directory {os.getcwd()})")
        check_policy(target, path)
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(f"__shiftboss_flow__{path.stem}", path)
        if spec is None or spec.loader is None:
            raise EntrypointError(f"cannot import {target!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        check_policy(target, None)
        module = importlib.import_module(target)
    function = getattr(module, name, None)
    if not callable(function):
        raise EntrypointError(f"{target!r} has no function {name!r}")
    return function


def check_parameters(function: Callable[..., Any], parameters: dict[str, Any]) -> None:
    signature = inspect.signature(function)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    known = {n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(parameters) - known) if not accepts_any else []
    missing = sorted(
        n for n, p in signature.parameters.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in parameters
    )
    problems = []
    if unknown:
        problems.append(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if missing:
        problems.append(f"missing parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if problems:
        raise EntrypointError(f"{function.__name__}{signature}: " + "; ".join(problems))


def die_with_worker() -> None:
    """Ask Linux to kill this process when the worker that started it dies (PR_SET_PDEATHSIG).

    Set here, after exec, because doing it between fork and exec is unsafe in a worker
    that runs threads; if the worker is already gone, stop at once."""
    worker = os.environ.get("SHIFTBOSS_WORKER_PID")
    if not worker or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(worker):
        os._exit(1)


def read_parameters() -> dict[str, Any]:
    """The run's parameters; standard input is left at its end for the flow."""
    if os.environ.get("SHIFTBOSS_PARAMETERS_STDIN"):
        text = sys.stdin.buffer.read().decode()
    else:
        text = os.environ.get("SHIFTBOSS_PARAMETERS", "")
    parameters = json.loads(text or "{}")
    if not isinstance(parameters, dict):
        raise EntrypointError(f"parameters must be a JSON object, got {type(parameters).__name__}")
    return parameters


def main() -> int:
    die_with_worker()
    return run(os.environ.get("SHIFTBOSS_ENTRYPOINT", ""))


def run(entrypoint: str, parameters: dict[str, Any] | None = None) -> int:
    """Load the flow, check its parameters (read as the worker sends them when not given),
    call it; the process's exit code. A warm start (workers/forkserver.py) calls this in a
    child forked after the imports."""
    try:
        if parameters is None:
            parameters = read_parameters()
        function = load(entrypoint)
        check_parameters(function, parameters)
    except EntrypointError as exc:
        print(f"shiftboss: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    try:
        result = function(**parameters)
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


async def _await(result: Any) -> Any:
    return await result


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.exit(main())
