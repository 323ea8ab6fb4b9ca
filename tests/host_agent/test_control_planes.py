"""An agent's list of control-plane URLs (`host_agent/control_planes.py`) against real TCP servers:
it moves to the next URL when the current one refuses the connection, breaks it without an answer,
or answers as a failed gateway, and stays there; a single-use token request is never sent twice."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from wrenn_platform.host_agent.control_planes import failover_client, parse_urls

Handler = Callable[[bytes], Awaitable[bytes | None]]  # request head → raw response (None: hang up)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: connects are refused


@asynccontextmanager
async def _server(answer: Handler, hits: list[str]) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        hits.append(head.split(b" ")[1].decode())
        response = await answer(head)
        if response is not None:
            writer.write(response)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def _status(code: int) -> Handler:
    async def answer(_: bytes) -> bytes:
        return f"HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
    return answer


async def _hang_up(_: bytes) -> None:
    return None


def test_urls_are_split_on_commas_and_checked() -> None:
    assert parse_urls(["http://a:1/, http://b:2", "http://a:1"]) == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError):
        parse_urls(["a:1"])
    with pytest.raises(ValueError):
        parse_urls([" , "])


async def test_a_refused_connection_moves_to_the_next_url_for_good() -> None:
    hits: list[str] = []
    refused = f"http://127.0.0.1:{_closed_port()}"
    async with _server(_status(204), hits) as good, failover_client([refused, good]) as http:
        assert (await http.post("/v1/hosts/h/heartbeat", json=None)).status_code == 204
        assert (await http.post("/v1/hosts/auth/refresh", json={"refresh_token": "t"})).status_code == 204
    assert hits == ["/v1/hosts/h/heartbeat", "/v1/hosts/auth/refresh"]


async def test_gateway_failures_and_broken_connections_move_on_but_tokens_are_not_resent() -> None:
    gateway: list[str] = []
    broken: list[str] = []
    good: list[str] = []
    async with (_server(_status(503), gateway) as a, _server(_hang_up, broken) as b,
                _server(_status(204), good) as c):
        async with failover_client([a, b, c]) as http:
            # 503 from a, no answer from b: the heartbeat is sent on to c.
            assert (await http.post("/v1/hosts/h/heartbeat")).status_code == 204
            assert (gateway, broken, good) == (["/v1/hosts/h/heartbeat"],) * 3
        async with failover_client([b, c]) as http:
            # b may have used the token before hanging up: not sent again, but the next call goes to c.
            with pytest.raises(httpx.TransportError):
                await http.post("/v1/hosts/auth/refresh", json={"refresh_token": "t"})
            assert (await http.post("/v1/hosts/auth/refresh", json={"refresh_token": "t"})).status_code == 204
    assert broken == ["/v1/hosts/h/heartbeat", "/v1/hosts/auth/refresh"]
    assert good == ["/v1/hosts/h/heartbeat", "/v1/hosts/auth/refresh"]


async def test_when_every_url_fails_the_error_is_raised() -> None:
    async with failover_client([f"http://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:{_closed_port()}"]) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("/v1/hosts/h/heartbeat")
