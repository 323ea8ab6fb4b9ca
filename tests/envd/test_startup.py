"""What a fresh envd loads: no asyncio or OpenSSL, no PTY or thread-pool modules until a request needs them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from wrenn_platform.host_agent.envd_client import ProcessEnded, ProcessStarted, PtySize

from . import rpc
from .conftest import COPY_NAME, GUEST_PYTHON, EnvdProcess

# Shared objects whose presence in /proc/<pid>/maps shows a module was imported.
NOT_AT_START = ("libssl", "libcrypto", "_ssl.", "_hashlib.", "_asyncio.", "termios.", "_queue.")


def mapped(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


async def test_idle_envd_loads_no_openssl_and_lazy_modules_work_on_first_use(
    start_envd: Callable[..., EnvdProcess],
) -> None:
    envd = start_envd()
    async with envd.client() as client:
        # What a capsule's start does (the runtime's /init) and a first command.
        await client.init(env_vars={"A": "1"}, default_user="root", timestamp=time.time())
        result = await client.run("true")
        assert result.exit_code == 0
        maps = mapped(envd.pid)
        for name in NOT_AT_START:
            assert name not in maps, f"{name} loaded by an idle envd"

        # First PTY: termios is imported then, and the terminal works.
        events = client.start("/bin/sh", ["-c", "stty size"], pty=PtySize(cols=91, rows=17))
        seen = [event async for event in events]
        assert isinstance(seen[0], ProcessStarted)
        assert isinstance(seen[-1], ProcessEnded) and seen[-1].exit_code == 0
        output = b"".join(getattr(e, "data", b"") for e in seen)
        assert b"17 91" in output
        # First file operation as another user: its thread pool (and queue) is created then.
        info = await rpc.stat(client, "/", user="nobody")
        assert info.path == "/"
        maps = mapped(envd.pid)
        assert "termios." in maps and "_queue." in maps
        assert "libssl" not in maps


def test_envd_imports_neither_asyncio_nor_heavy_modules(envd_root: object) -> None:
    """envd runs on its own small event loop (`aio`): importing all of it leaves asyncio, ssl,
    logging, typing and concurrent.futures unloaded (each is start-up time in every capsule),
    and what a first command needs (json, subprocess, ctypes) waits until the first answer."""
    heavy = ("asyncio", "ssl", "logging", "typing", "concurrent.futures", "inspect", "traceback", "socket")
    heavy += ("selectors", "signal", "threading", "collections", "contextlib", "functools", "enum")
    # Needed only from the first request on: imported after envd has answered it (or on use).
    heavy += ("json", "re", "subprocess", "locale", "ctypes")
    code = (
        f"import sys, {COPY_NAME}.__main__, {COPY_NAME}.server; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [GUEST_PYTHON, "-S", "-E", "-c", code], cwd=str(envd_root), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
