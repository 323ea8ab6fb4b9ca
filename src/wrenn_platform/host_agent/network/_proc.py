"""Running the network tools (iproute2, conntrack) from async code."""

from __future__ import annotations

import asyncio


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
