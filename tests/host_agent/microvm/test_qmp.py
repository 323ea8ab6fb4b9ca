"""The QMP fd hand-over (pause, snapshot and resume send device state through it) on both event
loops: asyncio's, which the in-process tests use, and uvloop, which `wrenn server` runs.

A minimal QMP peer on a unix socket stands in for QEMU: it greets, accepts capabilities, and
answers `getfd` only once the fd has arrived with SCM_RIGHTS, reporting what the fd points at.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from wrenn_platform.host_agent.runtime.microvm.qmp import Qmp, QmpError


def _serve_one(listener: socket.socket, received: list[str]) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(json.dumps({"QMP": {"version": {}, "capabilities": []}}).encode() + b"\r\n")
        while True:
            fds = array.array("i")
            data, ancillary, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            if not data:
                return
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                received.append(os.readlink(f"/proc/self/fd/{fd}"))
                os.close(fd)
            for line in data.split(b"\n"):
                if line.strip() in (b"", b" "):
                    continue
                request = json.loads(line)
                answer = {"return": {}, "id": request.get("id")}
                if request["execute"] == "getfd" and not received:
                    answer = {"error": {"class": "GenericError", "desc": "no fd received"}, "id": request.get("id")}
                conn.sendall(json.dumps(answer).encode() + b"\r\n")


@pytest.fixture
def qmp_peer(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    path = tmp_path / "qmp.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    received: list[str] = []
    thread = threading.Thread(target=_serve_one, args=(listener, received), daemon=True)
    thread.start()
    yield path, received
    listener.close()
    thread.join(5)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_an_fd_reaches_qemu_on_either_event_loop(run: Callable[..., None], qmp_peer: tuple[Path, list[str]],
                                                  tmp_path: Path) -> None:
    path, received = qmp_peer
    state_file = tmp_path / "state"
    state_file.write_bytes(b"")

    async def hand_over(fd: int) -> None:
        qmp = Qmp(path, "test")
        await qmp.connect(limit_s=5)
        try:
            await qmp.pass_fd(fd, "wrenn-state")
        finally:
            await qmp.close()

    with open(state_file, "rb") as f:
        run(hand_over(f.fileno()))
    assert received == [str(state_file)]


def test_a_qemu_that_never_greets_is_given_up_on_in_time(tmp_path: Path) -> None:
    """A stopped or wedged QEMU accepts on its socket (the kernel's backlog) but never speaks."""
    path = tmp_path / "silent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    async def try_connect() -> float:
        started = asyncio.get_running_loop().time()
        with pytest.raises(QmpError, match="cannot connect"):
            await Qmp(path, "test").connect(limit_s=0.5)
        return asyncio.get_running_loop().time() - started

    try:
        assert uvloop.run(try_connect()) < 5
    finally:
        listener.close()
