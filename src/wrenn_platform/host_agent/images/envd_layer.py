"""The cheap layer: envd (a stdlib-only package) copied into a template tree, with its launcher."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from wrenn_platform.host_agent.images.recipe import (
    ENVD_LAUNCHER,
    ENVD_LAYER_VERSION,
    ENVD_LIB_DIR,
    ENVD_PACKAGE,
    LAUNCHER_SCRIPT,
)

# .../wrenn_platform/host_agent/images/envd_layer.py -> .../wrenn_platform/envd
DEFAULT_ENVD_SOURCE = Path(__file__).resolve().parents[2] / "envd"

_IGNORED_DIRS = {"__pycache__"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def _source_files(source: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS and not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.endswith(_IGNORED_SUFFIXES):
                continue
            files.append(Path(dirpath) / filename)
    return files


def envd_hash(source: Path = DEFAULT_ENVD_SOURCE) -> str:
    """Hash of everything the envd layer installs: the package's files and the launcher."""
    if not source.is_dir():
        raise FileNotFoundError(f"envd source directory not found: {source}")
    digest = hashlib.sha256()
    digest.update(f"envd-layer-v{ENVD_LAYER_VERSION}\0{LAUNCHER_SCRIPT}\0".encode())
    for path in _source_files(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def install_envd(rootfs: Path, source: Path = DEFAULT_ENVD_SOURCE) -> None:
    """Copy envd into `rootfs` as the package `wrenn_envd`, install the launcher, precompile.

    Only creates new files: the rest of the tree may be hard links shared with the base layer.
    """
    lib_dir = rootfs / ENVD_LIB_DIR.lstrip("/")
    package_dir = lib_dir / ENVD_PACKAGE
    if package_dir.exists():
        shutil.rmtree(package_dir)
    package_dir.mkdir(parents=True)
    for path in _source_files(source):
        target = package_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        os.chmod(target, 0o644)
    for directory in [lib_dir, *(p for p in package_dir.rglob("*") if p.is_dir()), package_dir]:
        os.chmod(directory, 0o755)
    launcher = rootfs / ENVD_LAUNCHER.lstrip("/")
    launcher.parent.mkdir(parents=True, exist_ok=True)
    if launcher.exists() or launcher.is_symlink():
        launcher.unlink()
    launcher.write_text(LAUNCHER_SCRIPT)
    os.chmod(launcher, 0o755)
    # Bytecode compiled now saves envd's first start (seconds under TCG) and needs no writable tree.
    subprocess.run(
        ["chroot", str(rootfs), "/usr/bin/python3", "-m", "compileall", "-q", ENVD_LIB_DIR],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
    )
