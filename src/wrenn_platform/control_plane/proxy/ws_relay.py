"""One WebSocket session relayed between an ASGI WebSocket and a connection to a capsule's port.

The ASGI server speaks WebSocket to the client; toward the capsule this module speaks it with
`websockets`' sans-I/O client over the port connection, so the handshake reaches the capsule's
server with the client's own headers (Origin, cookies, subprotocols) and its answer decides:
101 → the client is accepted with the subprotocol the capsule chose; anything else is passed to the
client as the handshake's HTTP answer. Messages then go through whole (fragments reassembled),
pings are answered on each side by its own end, a close on either side closes the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from starlette.types import Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from wrenn_platform.agent_link.port_link import Upstream

from .http_relay import host_only_cookie

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # as the ASGI server's own limit toward the client
_CHUNK = 64 * 1024
# Set by the protocol object itself, or meaningless once relayed.
_NOT_FORWARDED = frozenset({b"host", b"connection", b"upgrade", b"sec-websocket-key", b"sec-websocket-version",
                            b"sec-websocket-extensions", b"sec-websocket-protocol", b"x-api-key",
                            b"x-forwarded-for", b"x-forwarded-proto", b"content-length", b"transfer-encoding"})


class HandshakeFailed(Exception):
    """The capsule's side closed or broke the connection before answering the handshake."""


async def _flush(protocol: ClientProtocol, upstream: Upstream) -> None:
    for data in protocol.data_to_send():
        if data:
            upstream.write(data)
    await upstream.drain()


def _handshake_request(scope: Scope) -> ClientProtocol:
    headers = scope["headers"]
    host = next((v for n, v in headers if n == b"host"), b"localhost").decode("latin-1")
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    try:
        uri = parse_uri(f"ws://{host}{target}")
    except InvalidURI as exc:
        raise HandshakeFailed(f"cannot forward this request target: {exc}") from exc
    protocol = ClientProtocol(uri, subprotocols=scope.get("subprotocols") or None, max_size=MAX_MESSAGE_BYTES)
    request = protocol.connect()
    for name, value in headers:
        if name not in _NOT_FORWARDED:
            request.headers[name.decode("latin-1")] = value.decode("latin-1")
    client = scope.get("client")
    if client:
        request.headers["X-Forwarded-For"] = client[0]
    protocol.send_request(request)
    return protocol


async def _read_handshake(protocol: ClientProtocol, upstream: Upstream) -> tuple[Response, Sequence[object]]:
    while True:
        data = await upstream.reader.read(_CHUNK)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        events = protocol.events_received()
        if events and isinstance(events[0], Response):
            return events[0], events[1:]
        if not data:
            raise HandshakeFailed("closed the connection without answering the WebSocket handshake")


async def deny(scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})


async def relay_websocket(scope: Scope, receive: Receive, send: Send, upstream: Upstream) -> None:
    """Relay one session; the caller has received `websocket.connect` and closes `upstream` after."""
    protocol = _handshake_request(scope)
    await _flush(protocol, upstream)
    response, early = await _read_handshake(protocol, upstream)
    if protocol.state is not State.OPEN:
        keep = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.raw_items()
                if k.lower() in ("content-type", "www-authenticate", "location")]
        await deny(scope, send, response.status_code if response.status_code != 101 else 502, keep,
                    bytes(response.body or b""))
        return
    cookies = [(b"set-cookie", host_only_cookie(v.encode("latin-1"))) for v in response.headers.get_all("Set-Cookie")]
    await send({"type": "websocket.accept", "subprotocol": protocol.subprotocol, "headers": cookies})
    to_client = asyncio.create_task(_capsule_to_client(protocol, upstream, send, early))
    to_capsule = asyncio.create_task(_client_to_capsule(protocol, upstream, receive))
    try:
        await asyncio.wait([to_client, to_capsule], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_client, to_capsule):
            task.cancel()
        for task in (to_client, to_capsule):
            with contextlib.suppress(asyncio.CancelledError, OSError, RuntimeError):
                await task
    if to_capsule.done() and not to_capsule.cancelled() and to_capsule.exception() is None:
        return  # the client left; nothing more to tell it
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": _close_code_for_client(protocol)})


def _close_code_for_client(protocol: ClientProtocol) -> int:
    received = protocol.close_rcvd
    if received is None:
        return 1011  # the capsule's side dropped the connection without a close frame
    return received.code if 1000 <= received.code <= 4999 and received.code not in (1005, 1006, 1015) else 1000


async def _client_to_capsule(protocol: ClientProtocol, upstream: Upstream, receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            if message.get("text") is not None:
                protocol.send_text(message["text"].encode())
            else:
                protocol.send_binary(message.get("bytes") or b"")
            await _flush(protocol, upstream)
        elif message["type"] == "websocket.disconnect":
            if protocol.state is State.OPEN:
                code = int(message.get("code") or 1000)
                if 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015):
                    protocol.send_close(code)
                else:
                    protocol.send_close()
                await _flush(protocol, upstream)
            return


async def _capsule_to_client(protocol: ClientProtocol, upstream: Upstream, send: Send, early: Sequence[object]) -> None:
    parts: list[bytes] = []
    text = False

    async def forward(events: Sequence[object]) -> None:
        nonlocal text
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                text, parts[:] = frame.opcode is Opcode.TEXT, [bytes(frame.data)]
            elif frame.opcode is Opcode.CONT:
                parts.append(bytes(frame.data))
            else:
                continue  # ping / pong / close: the protocol object answers and tracks them
            if frame.fin:
                data = b"".join(parts)
                parts.clear()
                await send({"type": "websocket.send", "text": data.decode()} if text
                           else {"type": "websocket.send", "bytes": data})

    await forward(early)
    while protocol.state in (State.OPEN, State.CLOSING):
        data = await upstream.reader.read(_CHUNK)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        await forward(protocol.events_received())
        await _flush(protocol, upstream)
        if not data:
            return
