"""Disks: the template's tree as a read-only ext4 base image, and a qcow2 overlay per capsule.

The base image is built once per (template build, disk size) with `mkfs.ext4 -d` into a sparse
file whose file system is exactly `disk_size_mb` large, so ext4 itself enforces the capsule's disk
size and the overlay presents base + changes as one virtio-blk disk. Snapshot templates flatten
the overlay into a standalone qcow2; clones put a fresh overlay on that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BACKING_FILE = "base.img"  # the capsule's hard link to its base image or template disk


class DiskError(Exception):
    pass


def _run(args: list[str]) -> None:
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise DiskError(f"{args[0]} failed: {out.stderr.strip()[-500:]}")


def template_key(template_dir: Path) -> str:
    """A stable identity for a template build: its recipe hash, else its path and mtime."""
    meta = template_dir / "template.json"
    h = hashlib.sha256(str(template_dir.resolve()).encode())
    if meta.exists():
        data = json.loads(meta.read_text())
        h.update(str(data.get("recipe_hash") or "").encode())
        h.update(str(data.get("created_at") or "").encode())
    h.update(str((template_dir / "rootfs").stat().st_mtime_ns).encode())
    return h.hexdigest()[:20]


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def ensure_base_image(cache_dir: Path, template_dir: Path, size_mb: int) -> Path:
    """The cached ext4 image of `template_dir/rootfs` with a `size_mb` file system."""
    rootfs = template_dir / "rootfs"
    if not rootfs.is_dir():
        raise DiskError(f"template {template_dir} has no rootfs/ tree")
    name = _template_name(template_dir)
    key = template_key(template_dir)
    dest = cache_dir / "base" / f"{name}-{key}-{size_mb}M.ext4"
    if dest.exists():
        return dest
    need = tree_bytes(rootfs) * 1.15 + (32 << 20)
    if size_mb << 20 < need:
        raise DiskError(f"disk_size_mb={size_mb} is smaller than the template needs ({int(need) >> 20} MiB)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".build-", suffix=".ext4")
    os.close(fd)
    try:
        os.truncate(tmp, size_mb << 20)
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "nodiscard,root_owner=0:0",
                "-L",
                "wrenn-root",
                "-d",
                str(rootfs),
                tmp,
            ]
        )
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    prune_base_images(dest.parent, name, key)
    return dest


def _template_name(template_dir: Path) -> str:
    meta = template_dir / "template.json"
    name = json.loads(meta.read_text()).get("name") if meta.exists() else None
    return "".join(c for c in str(name or template_dir.resolve().parent.name) if c.isalnum() or c in "._")


def prune_base_images(base_dir: Path, name: str, keep_key: str, min_age_s: float = 600.0) -> None:
    """Remove the cached images of older builds of template `name`. Capsules hard-link the image
    they run on, so this never breaks one; the age guard spares an image another agent on this
    machine has just resolved and not yet linked."""
    now = time.time()
    for path in base_dir.glob(f"{name}-*-*M.ext4"):
        if path.name.startswith(f"{name}-{keep_key}-"):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > min_age_s:
                path.unlink()


# Empty qcow2 overlays by (backing format, size): a few hundred KiB that only name "base.img"
# (relative: resolved next to the overlay), so a new capsule's overlay is a file write instead
# of a `qemu-img` process (13 ms on a quiet host, several times that under load).
_EMPTY_OVERLAYS: dict[tuple[str, int], bytes] = {}


def _empty_overlay(backing_fmt: str, size_mb: int) -> bytes:
    key = (backing_fmt, size_mb)
    if key not in _EMPTY_OVERLAYS:
        with tempfile.TemporaryDirectory(prefix="wrenn-overlay-") as tmp:
            path = Path(tmp) / "overlay.qcow2"
            # -u: "base.img" need not exist here, the size is given
            _run(["qemu-img", "create", "-q", "-u", "-f", "qcow2", "-o", "cluster_size=65536",
                  "-F", backing_fmt, "-b", BACKING_FILE, str(path), f"{size_mb}M"])  # fmt: skip
            _EMPTY_OVERLAYS[key] = path.read_bytes()
    return _EMPTY_OVERLAYS[key]


def create_overlay(dest: Path, backing: Path, backing_fmt: str, size_mb: int) -> None:
    """A qcow2 overlay on `backing`, which is first hard-linked next to it when the file system
    allows: deleting the template (or pruning the cache) then never breaks the capsule."""
    pinned = dest.with_name(BACKING_FILE)
    try:
        os.link(backing, pinned)
    except OSError:  # another file system: refer to the original by its path
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536",
              "-F", backing_fmt, "-b", str(backing), str(dest), f"{size_mb}M"])  # fmt: skip
        os.chmod(dest, 0o600)
        return
    data = _empty_overlay(backing_fmt, size_mb)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def flatten(src: Path, dest: Path) -> None:
    """Write `src` with its whole backing chain as one standalone qcow2 (`-U`: the source VM
    still holds its image)."""
    _run(["qemu-img", "convert", "-U", "-O", "qcow2", str(src), str(dest)])
    os.chmod(dest, 0o444)


def copy_sparse(src: Path, dest: Path) -> None:
    """Copy keeping holes (guest RAM files are mostly holes): SEEK_DATA + copy_file_range, which
    the kernel turns into a reflink (no data copied) on XFS and btrfs."""
    # No O_TRUNC: a QEMU may already have `dest` mapped (the copy overlaps its start-up).
    fo_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(src, "rb") as fi, os.fdopen(fo_fd, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        os.ftruncate(fo.fileno(), size)
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
            off = start
            while off < end:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), end - off, off, off)
                if n == 0:
                    break
                off += n
            pos = end


def create_memory_file(path: Path, size_mb: int) -> None:
    with open(path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.truncate(size_mb << 20)


def used_bytes(path: Path) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
