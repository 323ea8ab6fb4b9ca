"""Who a request acts as: the user's identity, and threads that touch files with it.

File operations for a non-root user run on threads whose filesystem uid/gid and supplementary
groups are that user's. Linux keeps credentials per thread; glibc's `setfsuid`/`setfsgid` are
plain syscalls (not broadcast to every thread like `setuid`), and `setgroups` is issued as a raw
syscall for the same reason. Changing the fsuid away from 0 drops the filesystem capabilities,
so the kernel itself enforces the user's permissions.
"""

from __future__ import annotations

import grp
import os
import pwd

from . import aio
from .connect import RpcError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}


class User:
    __slots__ = ("gid", "groups", "home", "name", "shell", "uid")

    def __init__(self, entry: pwd.struct_passwd) -> None:
        self.name = entry.pw_name
        self.uid = entry.pw_uid
        self.gid = entry.pw_gid
        self.home = entry.pw_dir or "/"
        self.shell = entry.pw_shell or "/bin/sh"
        try:
            self.groups = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))
        except OSError:
            self.groups = [entry.pw_gid]


def lookup_user(name: str) -> User:
    try:
        return User(pwd.getpwnam(name))
    except KeyError:
        raise RpcError("invalid_argument", f"user {name!r} does not exist") from None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _become(uid: int, gid: int, groups: list[int]) -> None:
    import ctypes  # only ever needed for non-root file access

    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_SETGROUPS.get(os.uname().machine)
    if number is None:
        raise OSError("setgroups syscall number unknown for this architecture")
    array = (ctypes.c_uint * len(groups))(*groups)
    if libc.syscall(number, len(groups), array) != 0:
        raise OSError(ctypes.get_errno(), "setgroups failed")
    libc.setfsgid(gid)
    libc.setfsuid(uid)
    if libc.setfsuid(-1 & 0xFFFFFFFF) != uid or libc.setfsgid(-1 & 0xFFFFFFFF) != gid:
        raise OSError("setfsuid/setfsgid did not take effect")


class FsIdentities:
    """One small thread pool per uid; root work runs on the loop's default executor."""

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int], aio.ThreadPool] = {}

    def _pool(self, user: User) -> aio.ThreadPool:
        key = (user.uid, user.gid)
        pool = self._pools.get(key)
        if pool is None:
            pool = aio.ThreadPool(2, initializer=_become, initargs=(user.uid, user.gid, user.groups))
            self._pools[key] = pool
        return pool

    async def run(
        self, user: User, func: Callable[..., T], *args: Any, inline_for_root: bool = False
    ) -> T:
        """`func(*args)` with `user`'s filesystem identity. `inline_for_root` runs a quick call
        (a stat) on the event loop when no identity switch is needed, saving a thread hop."""
        loop = aio.get_running_loop()
        privileged = user.uid == 0 or os.geteuid() != 0
        if privileged and inline_for_root:
            return func(*args)
        if privileged:
            return await loop.run_in_executor(None, func, *args)
        return await loop.run_in_executor(self._pool(user), func, *args)

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False)
