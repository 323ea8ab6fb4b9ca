"""A minimal HTTP/1.1 server over envd's streams (`aio`): keep-alive, chunked bodies both ways.

Only what envd needs. The stdlib `http.server` is avoided on purpose: its import graph (email,
socketserver, ...) costs seconds inside a TCG guest.
"""

from __future__ import annotations

from . import aio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    Handler = Callable[["Request", "Response"], Awaitable[None]]

MAX_HEADER_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    507: "Insufficient Storage",
}


class BadRequest(Exception):
    """The peer sent something that is not HTTP/1.1 as envd speaks it."""


def _unquote(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    text = text.replace("+", " ")
    parts = text.split("%")
    out = bytearray(parts[0].encode())
    for part in parts[1:]:
        try:
            out.append(int(part[:2], 16))
            out += part[2:].encode()
        except ValueError:
            out += b"%" + part.encode()
    return out.decode("utf-8", "replace")


def parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params[_unquote(key)] = _unquote(value)
    return params


class Request:
    """One request: its head, parsed eagerly, and its body, read lazily."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        reader: aio.StreamReader,
    ) -> None:
        self.method = method
        path, _, query = target.partition("?")
        self.path = path
        self.query = parse_query(query)
        self.headers = headers
        self._reader = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        try:
            self._remaining = int(length) if length is not None else 0
        except ValueError:
            raise BadRequest("bad content-length") from None
        if self._remaining < 0:
            raise BadRequest("bad content-length")
        self._chunk_left = 0
        self.body_done = not self._chunked and self._remaining == 0

    @property
    def content_length(self) -> int | None:
        return None if self._chunked else self._remaining

    async def read_some(self, limit: int = READ_CHUNK) -> bytes:
        """Up to `limit` bytes of the body; b"" at its end."""
        if self.body_done:
            return b""
        if not self._chunked:
            data = await self._reader.read(min(limit, self._remaining))
            if not data:
                raise BadRequest("body ended early")
            self._remaining -= len(data)
            self.body_done = self._remaining == 0
            return data
        if self._chunk_left == 0:
            line = await self._reader.readline()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size == 0:
                while (await self._reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.body_done = True
                return b""
            self._chunk_left = size
        data = await self._reader.read(min(limit, self._chunk_left))
        if not data:
            raise BadRequest("body ended early")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await self._reader.readexactly(2)
        return data

    async def iter_body(self, limit: int = READ_CHUNK) -> AsyncIterator[bytes]:
        while True:
            data = await self.read_some(limit)
            if not data:
                return
            yield data

    async def read_body(self, max_size: int = 16 * 1024 * 1024) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for data in self.iter_body():
            size += len(data)
            if size > max_size:
                raise BadRequest("body too large")
            parts.append(data)
        return b"".join(parts)

    async def read_exactly(self, n: int) -> bytes | None:
        """Exactly n body bytes, or None at a clean end of body (used for Connect envelopes)."""
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = await self.read_some(n - got)
            if not data:
                if got == 0:
                    return None
                raise BadRequest("body ended inside a message")
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    async def wait_disconnect(self) -> None:
        """Returns once the peer closed the connection (after the body, nothing more is read)."""
        while await self.read_some():
            pass
        while await self._reader.read(65536):
            pass  # pipelined requests are not supported on a streaming connection


class Response:
    """Writes one response: either whole (`send`) or streamed (`start` + `write`... + `end`).

    Small pieces (the head, chunk framing, small messages) are held back and sent together with
    the next write, so a short stream costs few packets; large pieces are written as they are.
    """

    COALESCE_BELOW = 64 * 1024

    def __init__(self, writer: aio.StreamWriter, keep_alive: bool) -> None:
        self._writer = writer
        self.keep_alive = keep_alive
        self.started = False
        self._chunked = False
        self._pending: list[bytes] = []
        self.status = 0

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        self.started = True
        self.status = status
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
        if not self.keep_alive:
            headers = {**headers, "Connection": "close"}
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _queue(self, data: bytes) -> None:
        if len(data) < self.COALESCE_BELOW:
            self._pending.append(data)
            return
        self._flush()
        self._writer.write(data)

    def _flush(self) -> None:
        if self._pending:
            self._writer.write(b"".join(self._pending))
            self._pending.clear()

    def _queue_body(self, parts: list[bytes]) -> None:
        size = sum(len(p) for p in parts)
        if not size:
            return
        if self._chunked:
            self._queue(b"%x\r\n" % size)
        for part in parts:
            self._queue(part)
        if self._chunked:
            self._queue(b"\r\n")

    async def send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        headers = {"Content-Length": str(len(body))}
        if body or status != 204:
            headers["Content-Type"] = content_type
        self._writer.write(self._head(status, headers) + body)
        await self._writer.drain()

    async def start(self, status: int, headers: dict[str, str], content_length: int | None = None) -> None:
        headers = dict(headers)
        if content_length is None:
            self._chunked = True
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(content_length)
        self._pending.append(self._head(status, headers))

    async def write(self, data: bytes) -> None:
        await self.write_parts([data])

    async def write_parts(self, parts: list[bytes]) -> None:
        """Send several pieces as one chunk of the body, without joining large ones."""
        self._queue_body(parts)
        self._flush()
        await self._writer.drain()

    async def end(self, last: bytes = b"") -> None:
        """Send `last` (if any) and the end of the body together."""
        self._queue_body([last])
        if self._chunked:
            self._queue(b"0\r\n\r\n")
        self._flush()
        await self._writer.drain()


async def read_head(reader: aio.StreamReader) -> tuple[str, str, dict[str, str], bool] | None:
    """The request line and headers, or None when the peer closed between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except aio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("truncated request head") from None
    except aio.LimitOverrunError:
        raise BadRequest("request head too large") from None
    lines = raw.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest("bad request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return method, target, headers, keep_alive


async def serve_connection(
    reader: aio.StreamReader, writer: aio.StreamWriter, handler: Handler
) -> None:
    writer.set_write_buffer_limits(high=4 * 1024 * 1024)
    try:
        while True:
            try:
                head = await read_head(reader)
            except BadRequest as exc:
                response = Response(writer, keep_alive=False)
                await response.send(400, f'{{"code":400,"message":"{exc}"}}'.encode())
                return
            if head is None:
                return
            method, target, headers, keep_alive = head
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            response = Response(writer, keep_alive)
            try:
                request = Request(method, target, headers, reader)
            except BadRequest as exc:
                response.keep_alive = False
                await response.send(400, f'{{"code":400,"message":"{exc}"}}'.encode())
                return
            await handler(request, response)
            if not response.keep_alive or not request.body_done:
                return
    except (ConnectionError, aio.IncompleteReadError, BadRequest):
        return
    except aio.CancelledError:
        # Only envd's shutdown cancels a connection: end quietly.
        return
    finally:
        writer.close()
