"""Channel deliveries refuse non-public destinations unless the operator allows them (SSRF)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from wrenn_platform.control_plane.channels.providers import Outgoing
from wrenn_platform.control_plane.channels.sender import refused_destination, send


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A real HTTP listener on loopback that records every request it gets."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/hook", received


async def test_loopback_is_refused_by_default_and_nothing_is_sent(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    async with httpx.AsyncClient() as client:
        result = await send(client, Outgoing("POST", url, b"{}", {}), 5.0, allow_private=False)
    assert not result.ok and not result.retry
    assert "non-public address" in result.error
    assert received == []


async def test_operator_may_allow_private_destinations(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    async with httpx.AsyncClient() as client:
        result = await send(client, Outgoing("POST", url, b"{}", {}), 5.0, allow_private=True)
    assert result.ok and result.status_code == 204
    assert len(received) == 1


@pytest.mark.parametrize("url", [
    "http://10.1.2.3/x", "http://192.168.0.10/x", "http://172.16.5.5/x", "http://169.254.169.254/latest",
    "http://[::1]:8080/x", "http://100.64.0.1/x", "http://localhost:5432/",
])
async def test_internal_addresses_are_refused(url: str) -> None:
    assert await refused_destination(url) is not None


async def test_public_addresses_pass_the_check() -> None:
    # Only the check, on an address literal: resolving it sends nothing anywhere.
    assert await refused_destination("https://1.1.1.1/hook") is None
