"""The distribution's metadata: what the wheel holds, what it requires, and the pinned versions
that make and CI install (the wheel itself is built and installed by tests/e2e/test_packaging.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
GRPC_FAMILY = ("grpcio", "grpcio-tools", "grpcio-health-checking", "grpcio-reflection")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def constraints() -> dict[str, str]:
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pinned[_name(name)] = version
    return pinned


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    every = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return [Requirement(r) for r in every if not r.startswith("shiftboss")]


def test_every_folder_of_python_files_is_a_package_so_the_wheel_carries_it() -> None:
    """setuptools puts packages in the wheel; a folder of .py files without __init__.py (as
    the Alembic versions/ folders were) is left out of it, silently."""
    missing = sorted(
        str(folder.relative_to(ROOT))
        for top in ("shiftboss", "core", "services", "workers")
        for folder in {path.parent for path in (ROOT / top).rglob("*.py")}
        if "__pycache__" not in folder.parts and not (folder / "__init__.py").exists()
    )
    assert not missing


def test_requirements_are_ranges_never_pins() -> None:
    requirements_ = [*PYPROJECT["build-system"]["requires"], *(str(r) for r in requirements())]
    pinned = [r for r in requirements_ if any(spec.operator in ("==", "===") for spec in Requirement(r).specifier)]
    assert not pinned
    unbounded = [r for r in requirements_ if not any(spec.operator == "<" for spec in Requirement(r).specifier)]
    assert not unbounded, "each requirement has an upper bound (the next major version)"


def test_the_base_install_brings_none_of_the_server_stack() -> None:
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"grpcio", "protobuf", "opentelemetry-api", "click", "rich", "pyyaml"}
    server = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["server"]}
    assert {"sqlalchemy", "asyncpg", "aiosqlite", "alembic", "jsonschema", "croniter"} <= server
    assert "shiftboss" in server  # with the telemetry extra


def test_the_pinned_versions_satisfy_every_range() -> None:
    pinned = constraints()
    outside = [f"{r} (pinned {pinned[_name(str(r))]})" for r in requirements() if not r.specifier.contains(pinned[_name(str(r))], prereleases=True)]
    assert not outside
    unpinned = sorted({_name(str(r)) for r in requirements()} - set(pinned))
    assert not unpinned


def test_grpcio_and_its_plugins_are_pinned_to_one_version() -> None:
    pinned = constraints()
    assert len({pinned[name] for name in GRPC_FAMILY}) == 1, {name: pinned[name] for name in GRPC_FAMILY}
