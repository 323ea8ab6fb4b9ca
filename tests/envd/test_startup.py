"""What a fresh envd loads: no OpenSSL, no PTY or thread-pool modules until a request needs them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from wrenn_platform.host_agent.envd_client import ProcessEnded, ProcessStarted, PtySize

from .conftest import COPY_NAME, GUEST_PYTHON, EnvdProcess

# Shared objects whose presence in /proc/<pid>/maps shows a module was imported.
NOT_AT_START = ("libssl", "libcrypto", "_ssl.", "_hashlib.", "termios.", "_queue.")


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
        info = await client.stat("/", user="nobody")
        assert info.path == "/"
        maps = mapped(envd.pid)
        assert "termios." in maps and "_queue." in maps
        assert "libssl" not in maps


def test_ssl_stays_importable_after_asyncio_was_imported_without_it(envd_root: object) -> None:
    code = (
        f"import {COPY_NAME}.lean, sys; assert 'ssl' not in sys.modules; "
        "import asyncio.base_events as b, ssl; assert b.ssl is None; print(ssl.OPENSSL_VERSION)"
    )
    done = subprocess.run(
        [GUEST_PYTHON, "-S", "-E", "-c", code], cwd=str(envd_root), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "OpenSSL" in done.stdout
