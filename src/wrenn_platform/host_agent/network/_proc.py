"""Running the network tools (iproute2, conntrack) from async code, and removing a netns."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


class CommandFailed(OSError):
    pass


async def run(argv: list[str], stdin: str | None = None, *, check: bool = True) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    message = err.decode(errors="replace").strip()
    if check and proc.returncode != 0:
        raise CommandFailed(f"{' '.join(argv[:4])} failed ({proc.returncode}): {message}")
    return proc.returncode or 0, message


def remove_netns_file(path: Path) -> None:
    """What `ip netns delete` does, without the process: detach the bind mount that keeps the
    namespace alive and remove the file. Idempotent."""
    if _libc.umount2(str(path).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted / already gone
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    path.unlink(missing_ok=True)
