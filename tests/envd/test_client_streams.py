"""EnvdClient's own keep-alive connections for process streams (envd_http), against real peers."""

from __future__ import annotations

import asyncio
import json
import struct

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import (
    CONNECT_JSON,
    EnvdClient,
    EnvdError,
    EnvdUnavailable,
)

from .conftest import EnvdProcess


def envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


STREAM = b"".join(
    [
        envelope(0, b'{"event":{"start":{"pid":9}}}'),
        envelope(0, b'{"event":{"end":{"exitCode":3,"exited":true,"status":"exit status 3"}}}'),
        envelope(2, b"{}"),
    ]
)


async def one_shot_server(requests: list[bytes]) -> asyncio.Server:
    """Answers one request per connection, then closes it without saying so (no
    `Connection: close`): the client pools a connection the server has already dropped."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        requests.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % CONNECT_JSON.encode())
        writer.write(b"Content-Length: %d\r\n\r\n" % len(STREAM) + STREAM)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_pooled_connection_the_server_closed_is_replaced() -> None:
    requests: list[bytes] = []
    server = await one_shot_server(requests)
    port = server.sockets[0].getsockname()[1]
    try:
        async with EnvdClient(f"http://127.0.0.1:{port}", "tok") as client:
            for _ in range(3):
                result = await client.run("x")
                assert (result.pid, result.exit_code) == (9, 3)
                await asyncio.sleep(0)
    finally:
        server.close()
        await server.wait_closed()
    assert len(requests) == 3  # each sent once, never twice
    body = requests[0].split(b"\r\n\r\n", 1)[1]
    assert json.loads(body[5:])["process"]["cmd"] == "x"
    assert b"X-Access-Token: tok" in requests[0]


async def test_errors_and_reuse_through_real_envd(envd: EnvdProcess) -> None:
    async with envd.client() as client, EnvdClient(envd.url, "wrong-token") as intruder:
        with pytest.raises(EnvdError) as caught:
            await intruder.run("true")
        assert caught.value.code == "unauthenticated"
        # Leaving a stream early closes its connection; the next call gets a fresh one.
        events = client.start("/bin/sh", ["-c", "echo a; sleep 5"])
        await anext(events)
        await events.aclose()
        assert (await client.run("/bin/echo", ["b"])).stdout == b"b\n"
        assert (await client.run("/bin/echo", ["c"])).stdout == b"c\n"


async def test_nothing_listening_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with EnvdClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(EnvdUnavailable):
            await client.run("true")


async def test_fast_streams_only_over_plain_tcp() -> None:
    def streams(url: str, transport: httpx.AsyncBaseTransport | None = None) -> bool:
        return EnvdClient(url, transport=transport)._streams is not None

    assert streams("http://10.11.0.1:49983")
    assert streams("http://10.11.0.1:49983", httpx.AsyncHTTPTransport(verify=False))  # the agent's
    assert not streams("http://10.11.0.1:49983", httpx.AsyncHTTPTransport(uds="/run/envd.sock"))
    assert not streams("http://envd", httpx.MockTransport(lambda request: httpx.Response(204)))
    assert not streams("https://10.11.0.1:49983")


async def test_an_agent_style_client_streams_through_its_own_connections(envd: EnvdProcess) -> None:
    transport = httpx.AsyncHTTPTransport(verify=False)
    async with EnvdClient(envd.url, envd.token, transport=transport) as client:
        assert (await client.run("/bin/echo", ["fast"])).stdout == b"fast\n"
        assert client._streams is not None and len(client._streams._idle) == 1
