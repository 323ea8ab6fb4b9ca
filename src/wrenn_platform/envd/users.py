"""Who a request acts as: the user's identity, and threads that act with it.

File operations and process starts for a non-root user run on threads whose uids, gids and
supplementary groups are all that user's. Linux keeps credentials per thread; glibc's `setresuid`
and friends would change every thread of envd, so they are issued as raw syscalls, which change
only the calling thread. Leaving uid 0 drops the thread's capabilities, so the kernel itself
enforces the user's permissions; a process vforked from such a thread starts as that user.
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

# (setgroups, setresgid, setresuid) syscall numbers
_SYSCALLS = {"x86_64": (116, 119, 117), "aarch64": (159, 149, 147)}


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
    """Make the calling thread (only it) the user: groups, then gids, then uids."""
    import ctypes  # only ever needed for non-root users

    libc = ctypes.CDLL(None, use_errno=True)
    numbers = _SYSCALLS.get(os.uname().machine)
    if numbers is None:
        raise OSError("setgroups/setresgid/setresuid syscall numbers unknown for this architecture")
    setgroups, setresgid, setresuid = numbers
    array = (ctypes.c_uint * len(groups))(*groups)
    for number, args, what in (
        (setgroups, (len(groups), array), "setgroups"),
        (setresgid, (gid, gid, gid), "setresgid"),
        (setresuid, (uid, uid, uid), "setresuid"),
    ):
        if libc.syscall(number, *args) != 0:
            raise OSError(ctypes.get_errno(), f"{what} failed")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError("the thread's user did not change")


class FsIdentities:
    """One small thread pool per non-root user; root work runs on the loop's default executor."""

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int], aio.ThreadPool] = {}

    def _pool(self, user: User) -> aio.ThreadPool:
        key = (user.uid, user.gid)
        pool = self._pools.get(key)
        if pool is None:
            pool = aio.ThreadPool(2, initializer=_become, initargs=(user.uid, user.gid, user.groups))
            self._pools[key] = pool
        return pool

    async def run(self, user: User, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` with `user`'s identity, on a thread."""
        loop = aio.get_running_loop()
        if user.uid == 0 or os.geteuid() != 0:
            return await loop.run_in_executor(None, func, *args)
        return await loop.run_in_executor(self._pool(user), func, *args)

    async def spawn(self, user: User, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` (a process start) on `user`'s thread; on the loop when no switch is needed."""
        if user.uid == 0 or os.geteuid() != 0:
            return func(*args)
        return await aio.get_running_loop().run_in_executor(self._pool(user), func, *args)

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False)
