"""`max_request_bytes` holds for every JSON body: 413 in the contract's shape, decided while the body
arrives (a declared Content-Length before a byte is read, a chunked body once it passes the limit),
so an unauthenticated 300 MB body costs the server no memory. File uploads keep their own limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server_process import running_server
from .conftest import LoggedInUser, UserFactory

MIB = 1024 * 1024


async def test_json_body_over_the_limit_is_413(make_user: UserFactory) -> None:
    user: LoggedInUser = await make_user()
    big = {"template": "minimal", "metadata": {"pad": "x" * (2 * MIB)}}
    response = await user.client.post("/v1/capsules", json=big)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "1048576" in response.json()["error"]["message"]
    # a body just under the limit is read and judged on its content as before
    small = await user.client.post("/v1/auth/login", content=b" " * (MIB - 100) + b"{}",
                                   headers={"content-type": "application/json"})
    assert small.status_code == 400 and small.json()["error"]["code"] == "invalid_request"


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """`wrenn server` as `make run` starts it (no embedded agent): (pid, port)."""
    with running_server(tmp_path / "data", env={"WRENN_EMBEDDED_AGENT": "false"}) as process:
        assert process.proc is not None
        yield process.proc.pid, process.port


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status = int(head.split(b" ", 2)[1])
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    return status, json.loads(await reader.readexactly(length))


async def test_declared_300_mb_login_body_is_refused_before_it_is_sent(server: tuple[int, int]) -> None:
    _pid, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 300000000\r\n\r\n")
        await writer.drain()
        status, body = await _response(reader)  # answered without a byte of the body
    finally:
        writer.close()
    assert status == 413 and body["error"]["code"] == "payload_too_large"  # type: ignore[index]


async def test_chunked_300_mb_login_body_is_cut_off_and_memory_stays_flat(server: tuple[int, int]) -> None:
    pid, port = server
    before = _rss_bytes(pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"x" * (64 * 1024)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0

    async def send_until_refused() -> None:
        nonlocal sent
        writer.write(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 300 * MIB:
                writer.write(framed)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass  # the server answered and closed: the rest is never read

    sender = asyncio.create_task(send_until_refused())
    try:
        status, body = await _response(reader)
    finally:
        writer.close()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert status == 413 and body["error"]["code"] == "payload_too_large"  # type: ignore[index]
    assert sent < 64 * MIB, f"the server took {sent} bytes before refusing"
    grown = _rss_bytes(pid) - before
    assert grown < 32 * MIB, f"the server grew by {grown} bytes"
