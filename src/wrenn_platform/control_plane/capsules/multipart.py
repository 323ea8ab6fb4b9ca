"""A `multipart/form-data` upload read incrementally: the `path` field, then the `file` part's bytes
as they arrive, never the whole body in memory. `path` must come before `file` (as `curl -F` and
every SDK send them) unless it is given as the `path` query parameter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..body_limit import lift_body_limit
from ..errors import ApiError, bad_request

_MAX_FIELD_BYTES = 64 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"file larger than the {limit} byte upload limit")


@dataclass
class _Part:
    name: str = ""
    is_file: bool = False


@dataclass
class _Events:
    """What the parser produced from the latest chunk."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    file_data: list[bytes] = field(default_factory=list)
    file_started: bool = False
    file_ended: bool = False


class _Parser:
    def __init__(self, boundary: bytes) -> None:
        self.events = _Events()
        self._part = _Part()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._value = bytearray()
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        })

    def feed(self, chunk: bytes) -> _Events:
        self.events = _Events()
        self._parser.write(chunk)
        return self.events

    def finish(self) -> None:
        self._parser.finalize()

    def _on_part_begin(self) -> None:
        self._part, self._headers, self._value = _Part(), {}, bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        self._part.is_file = self._part.name == "file"
        if self._part.is_file:
            self.events.file_started = True

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.is_file:
            self.events.file_data.append(bytes(data[start:end]))
            return
        self._value += data[start:end]
        if len(self._value) > _MAX_FIELD_BYTES:
            raise bad_request(f"form field {self._part.name!r} too large")

    def _on_part_end(self) -> None:
        if self._part.is_file:
            self.events.file_ended = True
        else:
            self.events.fields.append((self._part.name, self._value.decode("utf-8", "replace")))


@dataclass
class Upload:
    path: str
    chunks: AsyncIterator[bytes]
    limit: int | None
    exceeded: bool = False  # set when `chunks` stopped because the file passed `limit`


async def read_upload(request: Request, limit: int | None) -> Upload:
    """The `path` field and the file's bytes as they arrive. Past `limit` bytes, iterating `chunks`
    raises 413 and sets `exceeded` (so a caller that sees the error wrapped can still tell)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type", "expected multipart/form-data with fields path and file")
    declared = request.headers.get("content-length")
    if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise too_large(limit)
    lift_body_limit(request)  # this upload counts its own bytes against `limit` (None: unbounded stream)
    parser = _Parser(boundary)
    body = request.stream()
    path = request.query_params.get("path") or None
    pending: list[bytes] = []
    ended = False
    async for chunk in body:
        events = parser.feed(chunk)
        for name, value in events.fields:
            if name == "path" and path is None:
                path = value
        if events.file_started or events.file_data:
            pending, ended = events.file_data, events.file_ended
            break
    else:
        parser.finish()
        raise bad_request("file: field required")
    if not path:
        raise bad_request("path: field required (before the file part)")
    if "\x00" in path:
        raise bad_request("path: must not contain a NUL byte")

    async def chunks() -> AsyncIterator[bytes]:
        total = 0

        def count(piece: bytes) -> bytes:
            nonlocal total
            total += len(piece)
            if limit is not None and total > limit:
                upload.exceeded = True
                raise too_large(limit)
            return piece

        for piece in pending:
            yield count(piece)
        done = ended
        async for chunk in body:
            if done:
                continue  # drain the closing boundary
            events = parser.feed(chunk)
            for piece in events.file_data:
                yield count(piece)
            done = events.file_ended
        if not done:
            # Raised mid-stream, so the write to the capsule is abandoned and leaves nothing:
            # the bytes so far are only part of the file.
            raise bad_request("file: the upload ended before the part's closing boundary (truncated body)")

    upload = Upload(path=path, chunks=chunks(), limit=limit)
    return upload
