"""The negotiated raw output form of process streams: same events as JSON, old peers unaffected."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from collections.abc import AsyncIterator

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError, ProcessOutput
from wrenn_platform.wire.envd import CONNECT_JSON, CONNECT_RAW_OUTPUT

from .conftest import TOKEN, EnvdProcess

# Interleaved stdout and stderr, more than one event's worth (1 MiB) of stdout.
SCRIPT = "echo first; echo oops >&2; seq 1 400000; echo last >&2; printf 'no newline'"


def envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


async def collect(client: EnvdClient) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    async for event in client.start("/bin/sh", ["-c", SCRIPT]):
        if isinstance(event, ProcessOutput):
            if out and out[-1][0] == event.stream:
                out[-1] = (event.stream, out[-1][1] + event.data)
            else:
                out.append((event.stream, event.data))
    return out


async def test_raw_and_json_forms_deliver_the_same_output(envd: EnvdProcess) -> None:
    async with envd.client() as raw_client, envd.client(raw_output=False) as json_client:
        raw, plain = await collect(raw_client), await collect(json_client)
    stdout = b"".join(data for stream, data in raw if stream == "stdout")
    stderr = b"".join(data for stream, data in raw if stream == "stderr")
    assert stdout.startswith(b"first\n1\n2\n") and stdout.endswith(b"400000\nno newline")
    assert stderr == b"oops\nlast\n"
    assert b"".join(d for s, d in plain if s == "stdout") == stdout
    assert b"".join(d for s, d in plain if s == "stderr") == stderr


async def test_envd_answers_raw_only_when_asked(envd: EnvdProcess) -> None:
    body = envelope(0, json.dumps({"process": {"cmd": "/bin/echo", "args": ["hi"]}}).encode())
    headers = {"Content-Type": CONNECT_JSON, "X-Access-Token": TOKEN}
    async with httpx.AsyncClient(base_url=envd.url) as http:
        url = "/process.Process/Start"
        plain = await http.post(url, content=body, headers=headers)
        raw = await http.post(url, content=body, headers={**headers, "Accept": CONNECT_RAW_OUTPUT})
    assert plain.headers["content-type"] == CONNECT_JSON
    assert raw.headers["content-type"] == CONNECT_RAW_OUTPUT
    assert b'{"event":{"data":{"stdout":"' + base64.b64encode(b"hi\n") + b'"}}}' in plain.content
    assert envelope(0x80, b"\x01hi\n") in raw.content
    assert b'"data"' not in raw.content


@contextlib.asynccontextmanager
async def canned_envd(content_type: str, body: bytes) -> AsyncIterator[EnvdClient]:
    """A client of a server answering every process stream with `body` (chunked, as envd does)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert CONNECT_RAW_OUTPUT.encode() in head  # the client asked for the raw form
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                     % content_type.encode())
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        async with EnvdClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", TOKEN) as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()


async def test_client_reads_json_from_an_envd_without_the_raw_form() -> None:
    events = [
        envelope(0, b'{"event":{"start":{"pid":7}}}'),
        envelope(0, b'{"event":{"data":{"stdout":"' + base64.b64encode(b"old envd") + b'"}}}'),
        envelope(0, b'{"event":{"end":{"exitCode":0,"exited":true,"status":"exit status 0"}}}'),
        envelope(2, b"{}"),
    ]
    async with canned_envd(CONNECT_JSON, b"".join(events)) as client:
        result = await client.run("x")
    assert (result.pid, result.stdout, result.exit_code) == (7, b"old envd", 0)


async def test_client_refuses_raw_messages_it_did_not_negotiate() -> None:
    body = envelope(0, b'{"event":{"start":{"pid":7}}}') + envelope(0x80, b"\x01data")
    async with canned_envd(CONNECT_JSON, body) as client:
        with pytest.raises(EnvdError, match="raw output"):
            await client.run("x")
