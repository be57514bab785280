"""The mutation check (`make mutants`): the differential test must catch deliberate bugs.

Builds the compiled core once per mutant that core/sb_mutants.hpp defines, and once as it
is (the control), from the same sources: `setup.py build_ext` with SHIFTBOSS_MUTANT set,
into build/mutants/<hash of the sources>/, so a second run on unchanged sources builds
nothing. Then runs tests/unit/test_admission_twin.py against each build in a subprocess
(profile `mutant`: no shrinking, no example database) and checks the verdicts: the
control passes, and every mutant fails on a divergence from the reference. A mutant that
passes, or fails for another reason, fails the check.

    python -m tests.mutants [NAME ...]
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ["limit_off_by_one", "ties_flipped", "wrong_blocker", "paused_admitted", "key_order_flipped"]
CONTROL = "none"
DIVERGENCE = "compiled core diverges from the reference"  # as tests/unit/test_admission_twin.py says it
SOURCES = sorted([*ROOT.glob("core/*.pyx"), *ROOT.glob("core/*.pxi"), *ROOT.glob("core/*.hpp"), ROOT / "setup.py"])
JOBS = 2


@dataclass
class Verdict:
    mutant: str
    caught: bool  # failed on a divergence (for the control: passed)
    seconds: float
    detail: str


def cache_dir() -> Path:
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(sys.version.encode())
    return ROOT / "build" / "mutants" / digest.hexdigest()[:16]


def built(mutant: str, cache: Path) -> Path:
    """The extension module of `mutant`, built unless the cache has it."""
    out = cache / mutant
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    module = out / "shiftboss" / "core" / f"_admission{suffix}"
    if module.exists():
        return module
    env = {**os.environ, "CFLAGS": "-g0"}
    if mutant != CONTROL:
        env["SHIFTBOSS_MUTANT"] = mutant
    else:
        env.pop("SHIFTBOSS_MUTANT", None)
    command = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out), "--build-temp", str(out / "temp")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not module.exists():
        raise SystemExit(f"building {mutant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return module


def judged(mutant: str, module: Path) -> Verdict:
    env = {
        **os.environ,
        "SHIFTBOSS_CORE_UNDER_TEST": str(module),
        "SHIFTBOSS_TWIN_PROFILE": "mutant",
        "SHIFTBOSS_PURE_PYTHON_CORE": "1",  # keep the installed core out of the process
    }
    command = [sys.executable, "-m", "pytest", "tests/unit/test_admission_twin.py", "-q", "-x", "-p", "no:cacheprovider"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    if mutant == CONTROL:
        return Verdict(mutant, done.returncode == 0, seconds, "passes" if done.returncode == 0 else output[-3000:])
    lines = [line.strip(" |") for line in output.splitlines() if DIVERGENCE in line]
    if done.returncode != 0 and lines:
        return Verdict(mutant, True, seconds, lines[0].split(f"{DIVERGENCE}: ", 1)[-1][:160])
    return Verdict(mutant, False, seconds, "SURVIVED: the differential test passed" if done.returncode == 0 else output[-3000:])


def main(names: list[str]) -> int:
    cache = cache_dir()
    start = time.monotonic()
    # The control first and alone: its build writes core/_admission.cpp if the sources
    # changed, and the mutants then compile that same file with one macro more.
    modules = {CONTROL: built(CONTROL, cache)}
    with ThreadPoolExecutor(JOBS) as pool:
        for name, module in zip(names, pool.map(lambda name: built(name, cache), names)):
            modules[name] = module
        build_seconds = time.monotonic() - start
        verdicts = list(pool.map(lambda name: judged(name, modules[name]), [CONTROL, *names]))
    print(f"mutation check: builds in {cache.relative_to(ROOT)} ({build_seconds:.0f}s), then the differential test against each")
    for verdict in verdicts:
        if verdict.mutant == CONTROL:
            outcome = "control passes" if verdict.caught else "CONTROL FAILS"
        else:
            outcome = "caught" if verdict.caught else "NOT CAUGHT"
        print(f"  {verdict.mutant:<18} {outcome:<14} {verdict.seconds:5.1f}s  {verdict.detail}")
    print(f"  total {time.monotonic() - start:.0f}s")
    return 0 if all(verdict.caught for verdict in verdicts) else 1


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(MUTANTS)
    if unknown:
        raise SystemExit(f"unknown mutants {sorted(unknown)}; known: {MUTANTS}")
    sys.exit(main(sys.argv[1:] or MUTANTS))
