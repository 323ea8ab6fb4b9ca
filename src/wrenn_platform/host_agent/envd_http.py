"""A minimal keep-alive HTTP/1.1 client for envd's streaming calls over plain HTTP.

`EnvdClient` sends unary calls and file transfers through httpx, but a process stream (`Start`,
`Connect`) is the hot path of every exec: httpx/httpcore/anyio cost ~1.5 ms of CPU per call,
about as much as envd's own work. This speaks just what those calls need: one POST with a small
body, a response head, then a chunked (or sized) body read in large pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping

READ_LIMIT = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024


class StreamTimeout(Exception):
    """No response head or body bytes within the read timeout."""


class StreamBroken(Exception):
    """The connection could not be made, or broke before the response was complete."""


class StreamResponse:
    def __init__(
        self,
        pool: StreamPool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._writer = writer
        self.status = status
        self.headers = headers
        self._read_timeout = read_timeout
        self._done = False
        self._closed = False
        self._keep_alive = headers.get("connection", "").lower() != "close"

    async def _read(self, pending: Awaitable[bytes]) -> bytes:
        try:
            # Not wait_for: on 3.11 it wraps every read in a new task (a dozen per exec).
            async with asyncio.timeout(self._read_timeout):
                return await pending
        except TimeoutError:
            raise StreamTimeout("envd sent nothing within the read timeout") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            raise StreamBroken(f"response from envd broke: {exc!r}") from None

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked or sized)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                line = await self._read(self._reader.readline())
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise StreamBroken(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while (await self._read(self._reader.readline())) not in (b"\r\n", b"\n"):
                        pass  # trailers
                    break
                data = await self._read(self._reader.readexactly(size))
                await self._read(self._reader.readexactly(2))
                yield data
        else:
            length = self.headers.get("content-length")
            if length is None:
                self._keep_alive = False
                while data := await self._read(self._reader.read(READ_LIMIT)):
                    yield data
            else:
                remaining = int(length)
                while remaining:
                    data = await self._read(self._reader.read(min(remaining, READ_LIMIT)))
                    if not data:
                        raise StreamBroken("response body ended early")
                    remaining -= len(data)
                    yield data
        self._done = True

    async def read(self) -> bytes:
        return b"".join([data async for data in self.iter_body()])

    async def aclose(self) -> None:
        """Back to the pool if the body was read to its end, else closed."""
        if self._closed:
            return
        self._closed = True
        if self._done and self._keep_alive:
            self._pool.release(self._reader, self._writer)
        else:
            self._writer.close()


class StreamPool:
    """Idle keep-alive connections to one envd, reused newest first."""

    def __init__(self, host: str, port: int, max_idle: int = 16, expiry: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.expiry = expiry
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    def release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._idle) >= self.max_idle or reader.at_eof() or writer.is_closing():
            writer.close()
            return
        self._idle.append((reader, writer, time.monotonic()))

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            # A connection the server closed (EOF already seen) or idle too long is dropped.
            if reader.at_eof() or writer.is_closing() or now - since > self.expiry:
                writer.close()
                continue
            return reader, writer
        return None

    async def post(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> StreamResponse:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        idle = self._take_idle()
        if idle is not None:
            try:
                return await self._exchange(*idle, request, read_timeout)
            except _NothingReceived:
                pass  # closed by envd while idle (e.g. it restarted): once more on a new connection
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=READ_LIMIT), connect_timeout
            )
        except TimeoutError:
            raise StreamTimeout(f"no connection to {self.host}:{self.port} in time") from None
        except OSError as exc:
            raise StreamBroken(f"cannot connect to {self.host}:{self.port}: {exc!r}") from None
        try:
            return await self._exchange(reader, writer, request, read_timeout)
        except _NothingReceived as exc:
            raise StreamBroken(str(exc)) from None

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, read_timeout: float
    ) -> StreamResponse:
        try:
            writer.write(request)
            async with asyncio.timeout(read_timeout):
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            writer.close()
            raise StreamTimeout("envd did not answer in time") from None
        except asyncio.IncompleteReadError as exc:
            writer.close()
            if not exc.partial:
                raise _NothingReceived("envd closed the connection without answering") from None
            raise StreamBroken("envd's response head was cut short") from None
        except (ConnectionError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise _NothingReceived(f"connection to envd broke: {exc!r}") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            writer.close()
            raise StreamBroken(f"bad status line from envd: {status_line[:60]!r}") from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return StreamResponse(self, reader, writer, status, headers, read_timeout)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer, _ in idle:
            writer.close()
        for _, writer, _ in idle:
            with contextlib.suppress(OSError, RuntimeError):
                await writer.wait_closed()


class _NothingReceived(Exception):
    """The request may not have reached envd: safe to send again on a new connection."""
