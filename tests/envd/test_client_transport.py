"""EnvdClient's transport (keep-alive HTTP/1.1 on httptools) against real peers: reuse, a server
closing pooled connections, and no request ever sent twice."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable

import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError, EnvdUnavailable
from wrenn_platform.wire.envd import CONNECT_JSON

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
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
    CONNECT_JSON.encode(), len(STREAM), STREAM
)

# (request count on this connection, reader, writer, the request) -> whether to keep the connection
Handler = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


async def serve(requests: list[bytes], handler: Handler) -> asyncio.Server:
    """A server recording every request it reads, on every connection, and answering by `handler`."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                requests.append(request)
                count += 1
                if not await handler(count, reader, writer, request):
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connection, "127.0.0.1", 0)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def commands(requests: list[bytes]) -> list[str]:
    return [json.loads(r.split(b"\r\n\r\n", 1)[1][5:])["process"]["cmd"] for r in requests]


async def test_a_pooled_connection_the_server_closed_is_replaced() -> None:
    """The server answers one request per connection, then closes it without saying so (no
    `Connection: close`): the client pools a connection the server has already dropped."""

    async def answer_once(count: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        writer.write(ANSWER)
        await writer.drain()
        return False

    requests: list[bytes] = []
    server = await serve(requests, answer_once)
    try:
        async with EnvdClient(f"http://127.0.0.1:{port_of(server)}", "tok") as client:
            for _ in range(3):
                result = await client.run("x")
                assert (result.pid, result.exit_code) == (9, 3)
                await asyncio.sleep(0)
    finally:
        server.close()
        await server.wait_closed()
    assert commands(requests) == ["x", "x", "x"]  # each sent once, never twice
    assert b"X-Access-Token: tok" in requests[0]


async def test_a_request_that_reached_envd_is_never_sent_again() -> None:
    """A process Start written to a kept-alive connection, which the server then closes without
    answering (it may have started the process): the caller gets `unavailable`, and the server
    saw the request once — not again on a fresh connection, where it would run a second time."""

    async def answer_then_vanish(
        count: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> bool:
        if count == 1:
            writer.write(ANSWER)
            await writer.drain()
            return True
        return False  # read the second request, close without a word

    requests: list[bytes] = []
    server = await serve(requests, answer_then_vanish)
    try:
        async with EnvdClient(f"http://127.0.0.1:{port_of(server)}", "tok") as client:
            assert (await client.run("first")).exit_code == 3
            with pytest.raises(EnvdUnavailable) as caught:
                await client.run("second")
            assert caught.value.sent
    finally:
        server.close()
        await server.wait_closed()
    assert commands(requests) == ["first", "second"]


async def test_a_server_that_reads_and_closes_gets_each_request_once() -> None:
    async def vanish(count: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> bool:
        return False

    requests: list[bytes] = []
    server = await serve(requests, vanish)
    try:
        async with EnvdClient(f"http://127.0.0.1:{port_of(server)}", "tok") as client:
            for name in ("a", "b"):
                with pytest.raises(EnvdUnavailable):
                    await client.run(name)
            with pytest.raises(EnvdUnavailable):
                await client.send_signal("web")  # a unary call: the same rule
    finally:
        server.close()
        await server.wait_closed()
    assert commands(requests[:2]) == ["a", "b"] and len(requests) == 3


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
        # Streams, unary calls and plain HTTP all went over one kept-alive connection.
        await client.list_processes()
        assert await client.health()
        assert len(client._transport._idle) == 1


async def test_nothing_listening_is_unavailable_and_never_sent() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = port_of(server)
    server.close()
    await server.wait_closed()
    async with EnvdClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(EnvdUnavailable) as caught:
            await client.run("true")
        assert not caught.value.sent
        assert not await client.health()


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError):
        EnvdClient("https://10.11.0.1:49983")
