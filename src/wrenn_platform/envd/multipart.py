"""A streaming `multipart/form-data` reader (E2B's SDK uploads small files this way)."""

from __future__ import annotations

from .httpio import BadRequest, Request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MAX_HEAD = 16 * 1024


def boundary_of(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise BadRequest("multipart body without a boundary")


def _filename(head: bytes) -> str | None:
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "content-disposition":
            continue
        for param in value.split(";")[1:]:
            key, _, raw = param.strip().partition("=")
            if key.lower() == "filename":
                return raw.strip().strip('"')
    return None


class MultipartReader:
    """Iterate parts with `next_part()`; read each part's bytes with `part_data()`."""

    def __init__(self, request: Request, boundary: bytes) -> None:
        self._request = request
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")  # so the first boundary looks like the others
        self._done = False
        self._in_part = False

    async def _fill(self) -> bool:
        data = await self._request.read_some()
        if not data:
            return False
        self._buffer += data
        return True

    async def next_part(self) -> str | None:
        """Skips to the next part; returns its filename ("" if none), or None after the last."""
        if self._in_part:
            async for _ in self.part_data():
                pass
        if self._done:
            return None
        while True:
            at = self._buffer.find(self._delimiter)
            if at >= 0 and len(self._buffer) >= at + len(self._delimiter) + 2:
                break
            if len(self._buffer) > MAX_HEAD + 2 * len(self._delimiter) and at < 0:
                del self._buffer[: -len(self._delimiter)]  # preamble
            if not await self._fill():
                raise BadRequest("multipart body ended before its closing boundary")
        end = at + len(self._delimiter)
        if self._buffer[end : end + 2] == b"--":
            self._done = True
            return None
        del self._buffer[:end]
        while (head_end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise BadRequest("multipart part headers too large")
            if not await self._fill():
                raise BadRequest("multipart body ended inside part headers")
        head = bytes(self._buffer[:head_end])
        del self._buffer[: head_end + 4]
        self._in_part = True
        return _filename(head) or ""

    async def part_data(self) -> AsyncIterator[bytes]:
        keep = len(self._delimiter) - 1
        while self._in_part:
            at = self._buffer.find(self._delimiter)
            if at >= 0:
                if at:
                    yield bytes(self._buffer[:at])
                del self._buffer[:at]
                self._in_part = False
                return
            if len(self._buffer) > keep:
                yield bytes(self._buffer[:-keep])
                del self._buffer[:-keep]
            if not await self._fill():
                raise BadRequest("multipart body ended inside a part")
