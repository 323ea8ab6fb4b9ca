"""Directory watching with inotify (through ctypes), for `filesystem.Filesystem/WatchDir`.

Event kinds follow Go's fsnotify, which E2B's envd uses: create (also moved in), write, remove,
rename (moved away), chmod. Watches are added on the caller's filesystem-identity thread, so the
kernel checks that user's permission to read the directories.
"""

from __future__ import annotations

import os
import struct

from . import aio
from .aio import suppress
from .connect import RpcError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from typing import Any
else:
    from _collections import deque  # `collections` costs start-up

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
HEADER = struct.Struct("iIII")
MAX_QUEUED = 10_000

_libc: Any = None


def _inotify() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def event_type(mask: int) -> str | None:
    if mask & (IN_CREATE | IN_MOVED_TO):
        return "EVENT_TYPE_CREATE"
    if mask & (IN_DELETE | IN_DELETE_SELF):
        return "EVENT_TYPE_REMOVE"
    if mask & (IN_MOVED_FROM | IN_MOVE_SELF):
        return "EVENT_TYPE_RENAME"
    if mask & IN_MODIFY:
        return "EVENT_TYPE_WRITE"
    if mask & IN_ATTRIB:
        return "EVENT_TYPE_CHMOD"
    return None


class Watcher:
    """An inotify instance watching one directory (and, if recursive, those below it)."""

    def __init__(self, root: str, recursive: bool) -> None:
        self.root = root
        self.recursive = recursive
        self.fd = _check(_inotify().inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self.dirs: dict[int, str] = {}  # watch descriptor -> directory
        self.events: deque[tuple[str, str]] = deque()  # (path relative to root, event type)
        self.closed = False
        self.overflowed = False
        self.new_dirs: list[str] = []

    def add_tree(self, directory: str, report_existing: bool = False) -> None:
        """Blocking; run on the caller's identity thread. `report_existing`: for a directory that
        appeared under a recursive watch, what was created in it before its watch was added is
        reported as created (`mkdir -p a/b && touch a/b/c` outruns any watcher)."""
        self._add(directory)
        if not self.recursive:
            return
        for current, subdirs, files in os.walk(directory):
            for name in subdirs:
                with suppress(OSError):  # unreadable or gone: not watched
                    self._add(os.path.join(current, name))
            if report_existing:
                for name in subdirs + files:
                    if len(self.events) < MAX_QUEUED:
                        relative = os.path.relpath(os.path.join(current, name), self.root)
                        self.events.append((relative, "EVENT_TYPE_CREATE"))

    def _add(self, directory: str) -> None:
        wd = _check(
            _inotify().inotify_add_watch(self.fd, os.fsencode(directory), MASK | IN_ONLYDIR),
            f"watch {directory}",
        )
        self.dirs[wd] = directory

    def read(self) -> None:
        """Drain the inotify fd into `events` (non-blocking; called when it is readable)."""
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return
            offset = 0
            while offset + HEADER.size <= len(data):
                wd, mask, _, length = HEADER.unpack_from(data, offset)
                raw = data[offset + HEADER.size : offset + HEADER.size + length].rstrip(b"\0")
                offset += HEADER.size + length
                self._handle(wd, mask, os.fsdecode(raw))

    def _handle(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self.overflowed = True
            return
        directory = self.dirs.get(wd)
        if directory is None:
            return
        if mask & IN_IGNORED:
            del self.dirs[wd]
            if directory == self.root:
                self.closed = True
            return
        path = os.path.join(directory, name) if name else directory
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF) and directory != self.root:
            return  # reported by the parent's watch already
        kind = event_type(mask)
        if kind is None:
            return
        if self.recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            self.new_dirs.append(path)
        relative = os.path.relpath(path, self.root)
        if len(self.events) < MAX_QUEUED:
            self.events.append((relative, kind))
        else:
            self.overflowed = True
        if directory == self.root and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            self.closed = True

    def close(self) -> None:
        with suppress(RuntimeError):
            aio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def open_watcher(root: str, recursive: bool) -> Watcher:
    """Blocking; run on the caller's identity thread."""
    if not os.path.isdir(root):
        if os.path.lexists(root):
            raise RpcError("invalid_argument", f"{root}: not a directory")
        raise RpcError("not_found", f"{root}: no such directory")
    watcher = Watcher(root, recursive)
    try:
        watcher.add_tree(root)
    except BaseException:
        os.close(watcher.fd)
        raise
    return watcher
