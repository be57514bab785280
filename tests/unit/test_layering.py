"""Imports flow one way: core <- services, SDK <- workers; never the other way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core": "shiftboss.core", "services": "shiftboss.services", "workers": "shiftboss.workers", "shiftboss": "shiftboss"}

# What `pip install shiftboss` (no extra) leaves out: the SDK, the CLI and the worker run without it.
SERVER_STACK = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "jsonschema", "croniter", "cryptography", "grpc_health", "grpc_reflection", "uvloop", "Cython")

# What each layer may not import (prefix match on the imported module).
FORBIDDEN = {
    "shiftboss.core": ("grpc", "sqlalchemy", "alembic", "asyncpg", "aiosqlite", "shiftboss.services", "shiftboss.workers", "shiftboss.client", "shiftboss.v1", "shiftboss.cli"),
    "shiftboss.workers": ("shiftboss.services", *SERVER_STACK),
    "shiftboss": ("shiftboss.services", "shiftboss.workers", *SERVER_STACK),
}
# `server start` runs the mesh (on uvloop where it is installed) and `worker start` the
# daemon: the only places the public package reaches into services and workers.
ALLOWED = {("shiftboss.cli.server", "shiftboss.services"), ("shiftboss.cli.server", "uvloop"), ("shiftboss.cli.worker", "shiftboss.workers")}


def modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.append((".".join([package, *parts]), path))
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str:
    for package in ("shiftboss.core", "shiftboss.services", "shiftboss.workers"):
        if module == package or module.startswith(package + "."):
            return package
    return "shiftboss"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_no_wrong_way_import(module: str, path: Path) -> None:
    layer = layer_of(module)
    bad = sorted(
        name
        for name in imported(path)
        for prefix in FORBIDDEN.get(layer, ())
        if _matches(name, prefix) and not any(module.startswith(m) and _matches(name, p) for m, p in ALLOWED)
    )
    assert not bad, f"{module} imports {bad}"


def test_services_do_not_import_each_other() -> None:
    services = [p.name for p in (ROOT / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    offenders = []
    for module, path in modules():
        if layer_of(module) != "shiftboss.services":
            continue
        parts = module.split(".")
        own = parts[2] if len(parts) > 2 and parts[2] in services else None
        for name in imported(path):
            for other in services:
                if other != own and _matches(name, f"shiftboss.services.{other}"):
                    offenders.append(f"{module} -> {name}")
    assert not offenders


def test_core_imports_no_grpc_at_runtime() -> None:
    import subprocess
    import sys

    code = "import sys, shiftboss.core; bad=[m for m in sys.modules if m.split('.')[0] in ('grpc','sqlalchemy')]; print(bad); sys.exit(1 if bad else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_opentelemetry_is_used_through_its_public_api_only() -> None:
    """No module, and no name, of OpenTelemetry whose name starts with an underscore: those
    change or vanish in any release, and silently skew what is exported."""
    private = []
    for module, path in modules():
        for name in imported(path):
            if name.split(".")[0] == "opentelemetry" and any(part.startswith("_") for part in name.split(".")):
                private.append(f"{module} -> {name}")
    assert not private


def test_the_sdk_and_the_cli_load_nothing_of_the_server() -> None:
    """`pip install shiftboss` has no server stack: importing the SDK and the CLI, and its help
    (the worker's too), must not reach for it (tests/e2e/test_packaging.py runs them where it
    is absent)."""
    import subprocess
    import sys

    code = f"""
import sys
import grpc  # grpc itself imports grpc_tools (and with it grpc_health) where they are installed
from click.testing import CliRunner
before = set(sys.modules)
import shiftboss
from shiftboss import Client, AsyncClient
from shiftboss.cli import cli
for args in (["--help"], ["worker", "start", "--help"], ["work-pool", "ls", "--help"], ["server", "start", "--help"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
stack = {SERVER_STACK!r}
bad = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in stack or m.startswith(("shiftboss.services", "shiftboss.core")))
print(bad)
sys.exit(1 if bad else 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_imports_the_scheduler_servicer() -> None:
    """The servicer (scheduler/service.py) only translates protos and calls the engine below
    it; no module knows it (the mesh finds its `build` by name)."""
    servicer = "shiftboss.services.scheduler.service"
    offenders = [f"{m} -> {n}" for m, path in modules() if m != servicer for n in imported(path) if _matches(n, servicer)]
    assert not offenders
