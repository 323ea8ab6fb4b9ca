"""A thin layer over `qemu.qmp`: connect with retry, and the migration steps we use.

Device state travels through an fd passed over QMP (`getfd` + `fd:NAME`) because QEMU's
seccomp sandbox (`spawn=deny`) forbids the fork that `migrate exec:` needs.

The fd is sent here rather than with `QMPClient.send_fd_scm`, which reaches into asyncio's
private `TransportSocket._sock` and so fails on uvloop (what `wrenn server` runs): both loops'
transports give the socket's fd, and a duplicate of it sends the SCM_RIGHTS message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

COMMAND_TIMEOUT_S = 30.0  # a monitor command is answered at once by a live QEMU, even under TCG
MAX_BANDWIDTH = 64 << 30  # bytes/s: QEMU's default cap throttles even a small state file


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, socket_path: Path, name: str) -> None:
        self.socket_path = socket_path
        self._client = QMPClient(name)

    async def connect(self, limit_s: float = 10.0, alive: Any = None) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if not self.socket_path.exists():  # not yet bound: spare qemu.qmp's error log
                    raise FileNotFoundError(self.socket_path)
                # Bounded: a QEMU that accepts but never greets (stopped, wedged) must not hang us.
                await asyncio.wait_for(self._client.connect(str(self.socket_path)),
                                       max(0.1, deadline - time.monotonic()))
                return
            except Exception as exc:
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    await self.close()
                    raise QmpError(f"cannot connect to QMP at {self.socket_path}: {exc!r}") from exc
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the peer may be gone already
            await self._client.disconnect()

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await asyncio.wait_for(self._client.execute(cmd, args), COMMAND_TIMEOUT_S)
        except TimeoutError as exc:
            raise QmpError(f"QMP {cmd}: no answer in {COMMAND_TIMEOUT_S:.0f} s") from exc
        except Exception as exc:
            raise QmpError(f"QMP {cmd}: {exc}") from exc

    async def prepare_migration(self) -> None:
        """Guest RAM is a shared file: migrate device state only, at full speed."""
        await self.execute(
            "migrate-set-capabilities",
            {"capabilities": [{"capability": "x-ignore-shared", "state": True}]},
        )
        await self.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})

    async def pass_fd(self, fd: int, name: str) -> None:
        self._send_fd(fd)
        await self.execute("getfd", {"fdname": name})

    def _send_fd(self, fd: int) -> None:
        writer = self._client._writer  # qemu.qmp keeps its StreamWriter private, but it is the connection
        if writer is None:
            raise QmpError("QMP is not connected")
        transport_socket = writer.transport.get_extra_info("socket")
        with socket.socket(fileno=os.dup(transport_socket.fileno())) as sock:
            if sock.family != socket.AF_UNIX:
                raise QmpError("passing an fd needs QMP on a unix socket")
            socket.send_fds(sock, [b" "], [fd])

    async def save_state(self, state_file: Path) -> None:
        """With the VM stopped, write its device state to `state_file`."""
        fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            await self.pass_fd(fd, "wrenn-state")
        finally:
            os.close(fd)
        await self.execute("migrate", {"uri": "fd:wrenn-state"})
        await self._wait_migration()

    async def load_state(self, state_file: Path) -> None:
        fd = os.open(state_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await self.pass_fd(fd, "wrenn-state")
        finally:
            os.close(fd)
        await self.execute("migrate-incoming", {"uri": "fd:wrenn-state"})
        await self._wait_migration()

    async def _wait_migration(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        delay = 0.001
        while True:
            info = await self.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise QmpError(f"migration {status}: {info.get('error-desc', '')}")
            if time.monotonic() > deadline:
                raise QmpError(f"migration did not finish in {limit_s} s (status {status})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def status(self) -> str:
        res = await self.execute("query-status")
        return str(res.get("status"))
