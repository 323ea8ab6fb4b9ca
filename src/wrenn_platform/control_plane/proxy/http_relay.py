"""One HTTP/1.1 exchange relayed between an ASGI request and a connection to a capsule's port.

Bodies stream both ways chunk by chunk (ASGI flow control on the client side, `drain` on the
capsule side), so neither a large upload nor a large download is held whole, and each chunk of
a streamed response (Server-Sent Events...) goes out as it arrives. The response's framing is
read from its head: Content-Length, chunked, or until the capsule closes (then the connection is
not reused). Hop-by-hop headers are dropped both ways; the client's `X-API-Key` never reaches
the capsule, and a capsule's cookies lose any `Domain` (host-only: they cannot be set for the API's
domain, a parent of every capsule host).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from wrenn_platform.agent_link.port_link import Upstream

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                         b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"})
# expect: the ASGI server answers 100-continue itself; x-api-key: the caller's credential for Wrenn.
_DROP_FROM_REQUEST = _HOP_BY_HOP | {b"expect", b"x-api-key", b"x-forwarded-for", b"x-forwarded-proto"}
# date: the ASGI server writes its own.
_DROP_FROM_RESPONSE = _HOP_BY_HOP | {b"date"}
_CHUNK = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


class UpstreamBroken(Exception):
    """The capsule's side closed early or spoke something that is not HTTP/1.x; `started`: the
    response had already begun toward the client (so only closing the connection can tell it)."""

    def __init__(self, message: str, started: bool = False) -> None:
        super().__init__(message)
        self.started = started


@dataclass
class ResponseHead:
    status: int
    headers: list[tuple[bytes, bytes]]
    length: int | None  # Content-Length; None: chunked or until close
    chunked: bool
    keep_alive: bool


def request_head(scope: Scope, trust_forwarded: bool = False) -> tuple[bytes, bool, bool]:
    """The request's head for the capsule, whether it has a body, and whether that body is chunked.
    `trust_forwarded` (`WRENN_TRUST_PROXY_HEADERS`: a trusted reverse proxy is in front): the
    client's X-Forwarded-For is extended and its X-Forwarded-Proto kept, instead of replaced."""
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    parts = [scope["method"].encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    has_body = chunked = False
    forwarded_for = forwarded_proto = b""
    for name, value in scope["headers"]:
        if name in _DROP_FROM_REQUEST:
            if name == b"transfer-encoding":
                has_body = chunked = True
            elif name == b"x-forwarded-for":
                forwarded_for = value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
            continue
        if name == b"content-length" and value != b"0":
            has_body = True
        parts += (name, b": ", value, b"\r\n")
    if chunked:  # the body is re-framed chunked: a Content-Length beside it would make the framing ambiguous
        head = b"".join(parts).split(b"\r\n")
        parts = [b"\r\n".join(line for line in head if not line.lower().startswith(b"content-length:")),
                 b"transfer-encoding: chunked\r\n"]
    client = scope.get("client")
    peer = client[0].encode("ascii") if client else b""
    if not trust_forwarded:
        forwarded_for, forwarded_proto = b"", b""
    chain = b", ".join(v for v in (forwarded_for, peer) if v)
    if chain:
        parts += (b"x-forwarded-for: ", chain, b"\r\n")
    proto = forwarded_proto or scope.get("scheme", "http").encode("ascii")
    parts += (b"x-forwarded-proto: ", proto, b"\r\n\r\n")
    return b"".join(parts), has_body, chunked


async def send_body(receive: Receive, upstream: Upstream, chunked: bool) -> None:
    """The client's request body to the capsule, as it arrives."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionResetError("client went away during the request body")
        body = message.get("body", b"")
        if body:
            upstream.write(b"%x\r\n%b\r\n" % (len(body), body) if chunked else body)
        if not message.get("more_body", False):
            if chunked:
                upstream.write(b"0\r\n\r\n")
            await upstream.drain()
            return
        await upstream.drain()


async def read_head(reader: asyncio.StreamReader, method: str) -> ResponseHead:
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise UpstreamBroken("closed the connection without a response" if not exc.partial
                                 else "closed the connection in the middle of the response head") from exc
        except asyncio.LimitOverrunError as exc:
            raise UpstreamBroken("sent a response head over 64 KiB") from exc
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise UpstreamBroken(f"answered something that is not HTTP/1.x: {lines[0][:80]!r}")
        status = int(rest[:3])
        if 100 <= status < 200:
            continue  # interim (100 Continue, 103 Early Hints): the ASGI server has its own
        break
    keep_alive = version != b"HTTP/1.0"
    length: int | None = None
    chunked = False
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
            continue
        elif name == b"connection":
            tokens = value.lower()
            keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
        if name in _DROP_FROM_RESPONSE:
            continue
        if name == b"set-cookie":
            value = host_only_cookie(value)
        headers.append((name, value))
    if method == "HEAD" or status in _NO_BODY_STATUS:
        length, chunked = 0, False
    elif chunked:
        length = None
        headers = [(n, v) for n, v in headers if n != b"content-length"]
    elif length is None:
        keep_alive = False  # the body ends when the capsule closes the connection
    return ResponseHead(status, headers, length, chunked, keep_alive)


def host_only_cookie(value: bytes) -> bytes:
    """A Set-Cookie without its Domain attribute: a capsule's cookie stays with the capsule's own
    host and cannot reach the API or other capsules under the same parent domain."""
    if b"domain" not in value.lower():
        return value
    attributes = value.split(b";")
    return b";".join([attributes[0], *(a for a in attributes[1:] if not a.strip().lower().startswith(b"domain"))])


async def send_response(head: ResponseHead, reader: asyncio.StreamReader, send: Send) -> None:
    """The response from the capsule to the client; raises `UpstreamBroken` if its body is cut short."""
    start = {"type": "http.response.start", "status": head.status, "headers": head.headers}
    started = False
    try:
        if head.length is not None and head.length <= _CHUNK:
            body = await reader.readexactly(head.length) if head.length else b""
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        started = True
        await send(start)
        if head.length is not None:
            left = head.length
            while left:
                chunk = await reader.read(min(left, _CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": bool(left)})
            return
        if head.chunked:
            await _send_chunked(reader, send)
            return
        while chunk := await reader.read(_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except (asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as exc:
        raise UpstreamBroken(f"ended the response body early or malformed: {exc}", started) from exc


async def _send_chunked(reader: asyncio.StreamReader, send: Send) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers: dropped (ASGI has no response trailers without an extension)
            await send({"type": "http.response.body", "body": b""})
            return
        while size:
            chunk = await reader.readexactly(min(size, _CHUNK))
            size -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
