"""HTTP/1.1 to one envd over keep-alive TCP connections; responses parsed by `httptools`.

Every envd call (Connect unary and streaming, `/files`, `/init`, `/health`, ...) goes through
`Transport.request`. A request is never sent twice: an idle connection the server has closed is
dropped before anything is written to it, and once bytes of a request have been written, a failure
is the caller's to see — a process `Start` that reached envd must not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping

import httptools

READ_SIZE = 4 * 1024 * 1024

Body = bytes | AsyncIterable[bytes]


class TransportTimeout(Exception):
    """No connection, response head or body bytes within the timeout."""


class TransportBroken(Exception):
    """The connection could not be made, or broke before the response was complete.
    `sent` says whether any byte of the request may have reached the server."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _Parsed:
    """`httptools` callbacks: the response as it is parsed."""

    __slots__ = ("body", "complete", "head_done", "headers", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True
        # Only now: once the message is complete, the parser has forgotten it.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def closed_by_peer(self) -> bool:
        """Whether the server has closed it (or sent something unasked) while it was idle: checked
        on the socket itself too, in case the event loop has not yet read the EOF."""
        if self.reader.at_eof() or self.writer.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()  # not select(): descriptors above 1024 are common in a busy agent
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response whose head has arrived; the body is read by `iter_body` or `read`, then the
    connection goes back to the pool (if the body was read to its end) on `aclose`."""

    def __init__(
        self,
        transport: Transport,
        conn: _Connection,
        parsed: _Parsed,
        read_timeout: float,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._parsed = parsed
        self._read_timeout = read_timeout
        self.status: int = parsed.parser.get_status_code()
        self.headers = parsed.headers
        # Neither sized nor chunked (nor complete with its head, as a 204): the body ends when the
        # server closes the connection.
        self._until_close = (
            not parsed.complete
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )
        self._keep_alive = parsed.keep_alive and not self._until_close
        self._closed = False

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        parsed = self._parsed
        while True:
            if parsed.body:
                pieces, parsed.body = parsed.body, []
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if parsed.complete:
                return
            data = await _read(self._conn.reader.read(READ_SIZE), self._read_timeout, sent=True)
            if not data:
                if self._until_close:
                    parsed.complete = True
                    continue
                raise TransportBroken("envd closed the connection inside a response body", sent=True)
            _feed(self._parsed.parser, data)

    async def read(self) -> bytes:
        return b"".join([data async for data in self.iter_body()])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._parsed.complete and self._keep_alive and not self._parsed.body:
            self._transport._release(self._conn)
        else:
            self._conn.close()


async def _read(pending: Awaitable[bytes], seconds: float, *, sent: bool) -> bytes:
    try:
        # Not wait_for: on 3.11 it wraps every read in a new task.
        async with asyncio.timeout(seconds):
            return await pending
    except TimeoutError:
        raise TransportTimeout("envd sent nothing within the read timeout") from None
    except ConnectionError as exc:
        raise TransportBroken(f"connection to envd broke: {exc!r}", sent=sent) from None


def _feed(parser: httptools.HttpResponseParser, data: bytes) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise TransportBroken(f"malformed response from envd: {exc}", sent=True) from None


class Transport:
    """Keep-alive connections to one envd (`host:port`), idle ones reused newest first."""

    def __init__(self, host: str, port: int, *, max_idle: int = 16, expiry: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.expiry = expiry
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode("latin-1")

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Body = b"",
        *,
        connect_timeout: float,
        io_timeout: float,
    ) -> Response:
        """Send one request and wait for its response head (`io_timeout` for each read and write)."""
        conn = self._take_idle() or await self._connect(connect_timeout)
        head = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: " + self._host_header]
        head += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        if not isinstance(body, bytes):
            head.append(b"Transfer-Encoding: chunked")
        elif body or method not in ("GET", "HEAD"):
            head.append(b"Content-Length: %d" % len(body))
        request_head = b"\r\n".join(head) + b"\r\n\r\n"
        try:
            if isinstance(body, bytes):
                conn.writer.write(request_head + body)
                await _drained(conn.writer, io_timeout)
            else:
                conn.writer.write(request_head)
                await _send_chunked(conn.writer, body, io_timeout)
        except TransportBroken:
            # The server may have answered early (e.g. refused an upload) and closed: its answer
            # counts, if there is one.
            with contextlib.suppress(TransportBroken, TransportTimeout):
                return await self._response(conn, io_timeout, keep_alive=False)
            conn.close()
            raise
        except BaseException:
            conn.close()
            raise
        return await self._response(conn, io_timeout)

    async def _response(self, conn: _Connection, io_timeout: float, keep_alive: bool = True) -> Response:
        parsed = _Parsed()
        try:
            while not parsed.head_done:
                data = await _read(conn.reader.read(READ_SIZE), io_timeout, sent=True)
                if not data:
                    raise TransportBroken("envd closed the connection without answering", sent=True)
                _feed(parsed.parser, data)
        except BaseException:
            conn.close()
            raise
        response = Response(self, conn, parsed, io_timeout)
        if not keep_alive:
            response._keep_alive = False
        return response

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since > self.expiry or conn.closed_by_peer():
                conn.close()
                continue
            return conn
        return None

    async def _connect(self, seconds: float) -> _Connection:
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_SIZE)
        except TimeoutError:
            raise TransportTimeout(f"no connection to {self.host}:{self.port} in time") from None
        except OSError as exc:
            raise TransportBroken(f"cannot connect to {self.host}:{self.port}: {exc!r}", sent=False) from None
        return _Connection(reader, writer)

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) >= self.max_idle or conn.reader.at_eof() or conn.writer.is_closing():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError, RuntimeError):
                await conn.writer.wait_closed()


async def _drained(writer: asyncio.StreamWriter, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await writer.drain()
    except TimeoutError:
        raise TransportTimeout("envd did not take the request in time") from None
    except ConnectionError as exc:
        raise TransportBroken(f"connection to envd broke: {exc!r}", sent=True) from None


async def _send_chunked(writer: asyncio.StreamWriter, chunks: AsyncIterable[bytes], seconds: float) -> None:
    async for chunk in chunks:
        if chunk:
            writer.write(b"%x\r\n" % len(chunk))
            writer.write(chunk)
            writer.write(b"\r\n")
            await _drained(writer, seconds)
    writer.write(b"0\r\n\r\n")
    await _drained(writer, seconds)
