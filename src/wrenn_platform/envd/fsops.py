"""Blocking filesystem operations, run on a thread that carries the caller's fs identity."""

from __future__ import annotations

import errno
import os
import stat
import time

from .aio import suppress
from .connect import RpcError
from .users import group_name, user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FILE_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "link": "FILE_TYPE_SYMLINK"}


def rfc3339(ts: float) -> str:
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, 0
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{text}.{nanos:09d}Z" if nanos else f"{text}Z"


def entry_info(path: str, st: os.stat_result | None = None) -> dict[str, Any]:
    """A filesystem.EntryInfo (proto3 JSON) for `path`, not following a final symlink."""
    if st is None:
        st = os.lstat(path)
    mode = st.st_mode
    info: dict[str, Any] = {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "size": str(st.st_size),
        "mode": stat.S_IMODE(mode),
        "permissions": stat.filemode(mode),
        "owner": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "modifiedTime": rfc3339(st.st_mtime),
    }
    metadata = read_metadata(path)
    if metadata:
        info["metadata"] = metadata
    if stat.S_ISLNK(mode):
        info["type"] = FILE_TYPES["link"]
        info["isSymlink"] = True
        with suppress(OSError):
            info["symlinkTarget"] = os.readlink(path)
    elif stat.S_ISDIR(mode):
        info["type"] = FILE_TYPES["dir"]
    else:
        info["type"] = FILE_TYPES["file"]
    return info


METADATA_XATTR = "user.e2b."  # E2B's file metadata: one extended attribute per key


def read_metadata(path: str) -> dict[str, str]:
    """The file's `user.e2b.*` extended attributes, by key (none where xattrs are unsupported)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found: dict[str, str] = {}
    for name in names:
        if name.startswith(METADATA_XATTR):
            with suppress(OSError):
                found[name[len(METADATA_XATTR):]] = os.getxattr(path, name, follow_symlinks=False).decode(
                    "utf-8", "replace")
    return found


def stat_entry(path: str) -> dict[str, Any]:
    return entry_info(path)


def list_dir(path: str, depth: int) -> list[dict[str, Any]]:
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RpcError("invalid_argument", f"{path}: not a directory")
    entries: list[dict[str, Any]] = []

    def walk(directory: str, level: int) -> None:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            try:
                entries.append(entry_info(child.path, child.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while listing
            if level < depth and child.is_dir(follow_symlinks=False):
                # List what the user may see; unreadable subdirectories stay closed.
                with suppress(PermissionError):
                    walk(child.path, level + 1)
    walk(path, 1)
    return entries


def make_dir(path: str) -> dict[str, Any]:
    if os.path.lexists(path):
        raise RpcError("already_exists", f"{path}: already exists")
    os.makedirs(path, exist_ok=True)
    return entry_info(path)


def remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        _remove_tree(path)
    else:
        os.unlink(path)


def _remove_tree(path: str) -> None:
    with os.scandir(path) as it:
        children = list(it)
    for child in children:
        if child.is_dir(follow_symlinks=False):
            _remove_tree(child.path)
        else:
            os.unlink(child.path)
    os.rmdir(path)


def move(source: str, destination: str) -> dict[str, Any]:
    os.lstat(source)
    parent = os.path.dirname(destination)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        os.rename(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another filesystem: copy, then remove the source (not atomic, as with mv(1)).
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, "destination exists on another filesystem", destination) from None
        try:
            _copy(source, destination)
        except BaseException:
            if os.path.lexists(destination):
                remove(destination)
            raise
        remove(source)
    return entry_info(destination)


def _copy(source: str, destination: str) -> None:
    st = os.lstat(source)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), destination)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(destination, stat.S_IMODE(st.st_mode))
        with os.scandir(source) as it:
            for child in it:
                _copy(child.path, os.path.join(destination, child.name))
    elif stat.S_ISREG(st.st_mode):
        with open(source, "rb") as src, open(destination, "xb") as dst:
            while data := src.read(1024 * 1024):
                dst.write(data)
            os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
    else:
        raise OSError(errno.EINVAL, "cannot move special files across filesystems", source)
    os.utime(destination, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


# -- streamed files ------------------------------------------------------------------------


def open_for_read(path: str) -> tuple[int, int]:
    """An fd and the size of the regular file at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise RpcError("invalid_argument", f"{path}: is a directory")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def open_temp_for_write(path: str) -> tuple[int, str]:
    """A new temporary file next to `path` (parents created), to be renamed over it."""
    directory = os.path.dirname(path) or "/"
    os.makedirs(directory, exist_ok=True)
    if os.path.isdir(path):
        raise RpcError("invalid_argument", f"{path}: is a directory")
    mode = 0o644
    with suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(4).hex()}.envd-tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    if mode != 0o644:
        os.fchmod(fd, mode)  # the umask may have masked it
    return fd, temp


def write_all(fd: int, pieces: list[bytes]) -> None:
    """Write every piece, in order, with as few syscalls as possible."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        written = os.writev(fd, views[:1024])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def commit_temp(fd: int, temp: str, path: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Set `metadata` (as `user.e2b.*` xattrs), close and rename the temporary file over `path`; on
    failure it is removed."""
    try:
        for key, value in (metadata or {}).items():
            os.setxattr(fd, METADATA_XATTR + key, value.encode())
        os.close(fd)
        os.rename(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    return entry_info(path)


def discard_temp(fd: int, temp: str) -> None:
    with suppress(OSError):
        os.close(fd)
    with suppress(OSError):
        os.unlink(temp)
