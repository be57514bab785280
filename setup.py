"""Build glue that pyproject.toml cannot express: the package map and the Cython core.

core/, services/ and workers/ live at the top of the repository but are installed as
shiftboss.core, shiftboss.services and shiftboss.workers. The scheduling core is compiled
here; a missing compiler or Cython is an error, never a silent pure-Python install.
"""

from __future__ import annotations

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

ROOTS = {"shiftboss": "shiftboss", "shiftboss.core": "core", "shiftboss.services": "services", "shiftboss.workers": "workers"}


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(folder) if f"{name}.{sub}".split(".")[1] not in ("core", "services", "workers") or name != "shiftboss"]
    return sorted(set(found))


# SHIFTBOSS_MUTANT=<name> builds one of the deliberate bugs of core/sb_mutants.hpp into the
# core, for the mutation check (tests/mutants.py, `make mutants`) only: never set it for an
# install.
MUTANT = os.environ.get("SHIFTBOSS_MUTANT", "")
EXTENSIONS = [
    Extension(
        "shiftboss.core._admission",
        [os.path.join("core", "_admission.pyx")],
        language="c++",
        include_dirs=["core"],
        depends=sorted(glob.glob(os.path.join("core", "*.hpp")) + glob.glob(os.path.join("core", "*.pxi"))),
        define_macros=[("SHIFTBOSS_MUTANT", f"SB_MUTANT_{MUTANT.upper()}")] if MUTANT else [],
        extra_compile_args=["-O3"],
    ),
]

setup(
    packages=_packages(),
    ext_modules=cythonize(EXTENSIONS, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
)
