"""Build glue that pyproject.toml cannot express: the package map and the Cython core.

core/, services/ and workers/ live at the top of the repository but are installed as
shiftboss.core, shiftboss.services and shiftboss.workers. Every folder of Python files
under them is a package (each services/*/migrations/versions has an __init__.py), so the
wheel carries the Alembic scripts with the code. The scheduling core is compiled here; a
missing compiler or Cython is an error, never a silent pure-Python install.
"""

from __future__ import annotations

import os
import shutil
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOTS = {"shiftboss": "shiftboss", "shiftboss.core": "core", "shiftboss.services": "services", "shiftboss.workers": "workers"}

INSTALL_COMPILER = (
    "install a C++ compiler and Python's headers (Debian/Ubuntu: apt-get install g++ python3-dev; "
    "Fedora/RHEL: dnf install gcc-c++ python3-devel; Alpine: apk add g++ python3-dev; macOS: xcode-select --install) "
    "and retry"
)


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(folder) if f"{name}.{sub}".split(".")[1] not in ("core", "services", "workers") or name != "shiftboss"]
    return sorted(set(found))


class BuildCore(build_ext):
    """build_ext that says what to install when this machine cannot compile the core,
    rather than leaving the reader a compiler's traceback."""

    def build_extensions(self) -> None:
        missing = self._missing_tool()
        if missing:
            raise CompileError(f"shiftboss's scheduling core is compiled C++, and {missing}: {INSTALL_COMPILER}")
        super().build_extensions()

    def _missing_tool(self) -> str:
        compiler = self.compiler
        if compiler.compiler_type == "unix":
            # The C++ compile command (setuptools >= 72 keeps it apart from the C one).
            for attribute in ("compiler_so_cxx", "compiler_cxx"):
                command = getattr(compiler, attribute, None)
                if command:
                    if not shutil.which(command[0]):
                        return f"its compiler {command[0]!r} is not installed"
                    break
        headers = sysconfig.get_paths()["include"]
        if not os.path.exists(os.path.join(headers, "Python.h")):
            return f"Python's headers are not installed (no Python.h in {headers})"
        return ""


EXTENSIONS = [
    Extension("shiftboss.core._admission", [os.path.join("core", "_admission.pyx")], language="c++", extra_compile_args=["-O3"]),
]

setup(
    packages=_packages(),
    ext_modules=cythonize(EXTENSIONS, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildCore},
)
