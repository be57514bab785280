"""A container image with shiftboss installed, made on this machine: there is no registry to
pull a base image from. The root filesystem is this machine's Python 3.11 (the standard
library and the shared libraries its extensions load) plus the wheel built from the checkout
and its requirements, imported with `docker import`.

Built once and kept: under build/docker-image/, and in the daemon, tagged with a hash of the
sources the wheel is built from, so that a session builds the wheel and the image only when
shiftboss changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "docker-image"
REPOSITORY = "shiftboss-test"
#: The interpreter the image runs, and the standard library it needs (less what no flow here uses).
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
LEFT_OUT = shutil.ignore_patterns("config-3.11-*", "test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "EXTERNALLY-MANAGED")
SITE = "usr/local/lib/python3.11/dist-packages"
SOURCE_SUFFIXES = {".py", ".pyi", ".pyx", ".pxi", ".hpp", ".binpb", ".json", ".ini", ".mako", ".typed"}


def build_wheel(into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("shiftboss-*.whl"):
        old.unlink()
    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(into)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    (wheel,) = into.glob("shiftboss-*.whl")
    return wheel


def source_hash() -> str:
    """What the wheel is built from: the packages' files, the build's configuration and the
    pinned versions of what the image installs with it."""
    digest = hashlib.sha256()
    files = [ROOT / name for name in ("pyproject.toml", "setup.py", "constraints.txt", "tests/docker_image.py")]
    for folder in ("shiftboss", "core", "services", "workers"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def shared_libraries(files: list[Path]) -> set[Path]:
    """The shared libraries that the interpreter and these extension modules load (ldd)."""
    found: set[Path] = set()
    for chunk in range(0, len(files), 200):
        done = subprocess.run(["ldd", *map(str, files[chunk : chunk + 200])], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(Path(parts[2]))
            elif parts and parts[0].startswith("/") and "ld-linux" in parts[0]:
                found.add(Path(parts[0]))
    return found


def copy_into(rootfs: Path, path: Path) -> None:
    target = rootfs / path.resolve().relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path.resolve(), target)
    if path.resolve() != path:  # the name the loader asks for (a symlink on the host)
        link = rootfs / path.relative_to("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(target.name if link.parent == target.parent else path.resolve())


def root_filesystem(wheel: Path, rootfs: Path) -> None:
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "usr/bin").mkdir(parents=True)
    for folder in ("tmp", "etc", "proc", "sys", "dev", "lib64", "work"):
        (rootfs / folder).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    for name in ("lib", "bin", "sbin"):  # a merged /usr, as Debian's
        (rootfs / name).symlink_to(f"usr/{name}")
    (rootfs / "usr/lib").mkdir(exist_ok=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    shutil.copy2(PYTHON, rootfs / "usr/bin/python3.11")
    (rootfs / "usr/bin/python3").symlink_to("python3.11")
    (rootfs / "usr/bin/python").symlink_to("python3.11")
    shutil.copytree(STDLIB, rootfs / STDLIB.relative_to("/"), ignore=LEFT_OUT, symlinks=True)
    site = rootfs / SITE
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site), "-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts written for this host's interpreter
    extensions = [PYTHON, *(rootfs / STDLIB.relative_to("/") / "lib-dynload").glob("*.so"), *site.rglob("*.so")]
    for library in shared_libraries(extensions):
        copy_into(rootfs, library)


def build(client: docker.DockerClient) -> str:
    """The image's reference, imported into the daemon unless it is there already."""
    tag = f"{REPOSITORY}:{source_hash()}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    work = BUILD / tag.split(":")[1]
    rootfs, archive = work / "rootfs", work / "rootfs.tar"
    if not archive.exists():
        root_filesystem(build_wheel(work / "wheel"), rootfs)
        with tarfile.open(archive.with_suffix(".partial"), "w") as tar:
            tar.add(rootfs, arcname=".")
        archive.with_suffix(".partial").rename(archive)
        shutil.rmtree(rootfs)
    client.api.import_image(str(archive), repository=REPOSITORY, tag=tag.split(":")[1], changes=["WORKDIR /work", "ENV PYTHONUNBUFFERED=1"])
    for stale in BUILD.iterdir():  # one image's files are enough on disk, and in the daemon
        if stale.name != work.name:
            shutil.rmtree(stale, ignore_errors=True)
    for older in client.images.list(name=REPOSITORY):
        for other in set(older.tags) - {tag}:
            with contextlib.suppress(docker.errors.APIError):  # in use by a container: kept
                client.images.remove(other)
    return tag

