"""The capsule's disk and root: a sparse ext4 image holding the overlay's upper and work dirs.

Layout in the capsule's state dir::

    disk.img   sparse ext4 image, `disk_size_mb` big (writes past it fail with ENOSPC)
    disk/      its loop mount: upper/, work/ and console.log (envd's stdout and stderr)
    lower/     idmapped bind of the template's rootfs (owners shifted to the capsule's range)
    root/      the overlay: lower + upper; bwrap binds it as the capsule's /

This kernel has no project quotas on ext4/xfs/tmpfs here, hence a loop image per capsule: a sparse
copy of a pristine empty ext4 image made once per size (no journal). The loop device is attached
with autoclear: it detaches itself when the mount goes away.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from . import kernel

IMAGE = "disk.img"
DISK = "disk"
LOWER = "lower"
ROOT = "root"


class Paths:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.image = state_dir / IMAGE
        self.disk = state_dir / DISK
        self.upper = self.disk / "upper"
        self.work = self.disk / "work"
        self.root = state_dir / ROOT
        # On the capsule's own disk (beside upper/, invisible inside): capsule root can write to
        # bwrap's stdout through /proc/1/fd/1, and must not be able to fill the host's disk.
        self.console_log = self.disk / "console.log"

    def lower(self, i: int) -> Path:
        return self.state_dir / f"{LOWER}{i}"

    def lowers(self) -> list[Path]:
        return sorted(p for p in self.state_dir.glob(f"{LOWER}*") if p.name[len(LOWER) :].isdigit())


MKFS_OPTIONS = ("-F", "-q", "-m", "0", "-O", "^has_journal", "-E", "nodiscard")
PRISTINE_DIR = Path("/run/wrenn/namespace-disks")  # one empty file system per size, on tmpfs


def _pristine_image(size_mb: int) -> Path:
    """An empty ext4 image of `size_mb` (made once: mkfs costs ~10-30 ms, a sparse copy <1 ms)."""
    path = PRISTINE_DIR / f"ext4-v1-{size_mb}m.img"
    if path.exists():
        return path
    PRISTINE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = PRISTINE_DIR / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    try:
        with open(tmp, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        proc = subprocess.run(["mkfs.ext4", *MKFS_OPTIONS, str(tmp)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise OSError(f"mkfs.ext4 failed: {proc.stderr.decode(errors='replace').strip()}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _sparse_copy(source: Path, dest: Path) -> None:
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            os.ftruncate(dst, size)
            pos = 0
            while pos < size:
                try:
                    data = os.lseek(src, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                hole = os.lseek(src, data, os.SEEK_HOLE)
                offset = data
                while offset < hole:
                    copied = os.copy_file_range(src, dst, hole - offset, offset, offset)
                    if copied == 0:
                        raise OSError("short copy of a disk image")
                    offset += copied
                pos = hole
        finally:
            os.close(dst)
    finally:
        os.close(src)


def create_disk(paths: Paths, size_mb: int, owner: int) -> None:
    """Sparse image from the pristine one, loop-mounted at `disk/`, upper and work owned by the
    capsule's root."""
    _sparse_copy(_pristine_image(size_mb), paths.image)
    paths.disk.mkdir()
    kernel.loop_mount(str(paths.image), str(paths.disk), "ext4", kernel.MS_NODEV | kernel.MS_NOSUID)
    shutil.rmtree(paths.disk / "lost+found", ignore_errors=True)
    for d in (paths.upper, paths.work):
        d.mkdir()
        os.chown(d, owner, owner)


def mount_root(paths: Paths, lower_sources: list[Path], userns_fd: int) -> None:
    """Idmapped binds of each lower layer (top first), then the overlay over them."""
    for i, source in enumerate(lower_sources):
        target = paths.lower(i)
        target.mkdir()
        kernel.idmapped_bind(str(source), str(target), userns_fd)
    paths.root.mkdir()
    # Named through /proc/self/fd: the kernel shows the options as given in the capsule's own
    # /proc/self/mountinfo, and host paths would tell it where the host keeps its data.
    layers = [*(paths.lower(i) for i in range(len(lower_sources))), paths.upper, paths.work]
    fds = [os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for layer in layers]
    try:
        *lowers, upper, work = (f"/proc/self/fd/{fd}" for fd in fds)
        kernel.mount("overlay", str(paths.root), "overlay", 0,
                     f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}")
    finally:
        for fd in fds:
            os.close(fd)


def mount_points() -> list[str]:
    """Every mount point in this mount namespace (bind mounts of the same file system included,
    which `os.path.ismount` misses)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split(" ", 5)[4]
            points.append(raw.encode().decode("unicode_escape") if "\\" in raw else raw)
    return points


def unmount_all(paths: Paths) -> None:
    """Unmount root, lowers, disk (in that order); tolerate what is already gone."""
    targets = [str(p) for p in (paths.root, *paths.lowers(), paths.disk)]
    for _ in range(8):
        mounted = set(mount_points())
        pending = [t for t in targets if t in mounted]
        if not pending:
            return
        for target in pending:
            try:
                kernel.umount(target)
            except OSError:
                kernel.umount(target, kernel.MNT_DETACH)
    raise OSError(f"could not unmount everything under {paths.state_dir}")


def remove_state_dir(state_dir: Path) -> None:
    """Remove the directory, refusing while anything below it is still mounted."""
    if not state_dir.exists():
        return
    prefix = f"{state_dir}/"
    busy = [p for p in mount_points() if p.startswith(prefix) or p == str(state_dir)]
    if busy:
        raise OSError(f"refusing to remove {state_dir}: {busy[0]} is still mounted")
    shutil.rmtree(state_dir)


def disk_bytes_used(paths: Paths) -> int:
    try:
        st = os.statvfs(paths.disk)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize
