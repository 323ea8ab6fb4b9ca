"""The Connect protocol's JSON codec as envd speaks it: request envelopes, response envelopes
(with envd's raw-output form of process output), and the messages decoded into values.
The protocol is described in `docs/envd-protocol.md`."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from wrenn_platform.wire.api.capsules import FileEntry
from wrenn_platform.wire.envd import CONNECT_RAW_OUTPUT, END_STREAM, RAW_OUTPUT, RAW_STREAM_IDS

from .errors import EnvdError, EnvdUnavailable, error_from_end
from .values import EntryType, ProcessEnded, ProcessEvent, ProcessOutput, ProcessStarted, Selector, Stream

Message = dict[str, Any]

_RAW_STREAMS: dict[int, Stream] = {number: name for name, number in RAW_STREAM_IDS.items()}  # type: ignore[misc]
_STREAMS: tuple[Stream, ...] = ("stdout", "stderr", "pty")
_DATA_PREFIXES: dict[bytes, Stream] = {b'{"event":{"data":{"' + name.encode() + b'":"': name for name in _STREAMS}
_DATA_SUFFIX = b'"}}}'
_ENTRY_TYPES: dict[str, EntryType] = {
    "FILE_TYPE_FILE": "file",
    "FILE_TYPE_DIRECTORY": "directory",
    "FILE_TYPE_SYMLINK": "symlink",
}


def selector(value: Selector) -> Message:
    """A ProcessSelector: an int (or an all-digits string) is a pid, anything else a tag."""
    if isinstance(value, int) or value.isdigit():
        return {"pid": int(value)}
    return {"tag": value}


def envelope(message: Mapping[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", 0, len(data)) + data


def _decode(flags: int, view: memoryview, raw: bool) -> Message:
    if flags & RAW_OUTPUT:
        if not raw or len(view) < 1 or view[0] not in _RAW_STREAMS:
            raise EnvdError("internal", "unexpected raw output message from envd")
        return {"_raw": (_RAW_STREAMS[view[0]], bytes(view[1:]))}
    payload = bytes(view)
    # Output events are most of a JSON stream's bytes: decode envd's exact shape without a JSON pass.
    if payload.endswith(_DATA_SUFFIX):
        head = payload[:30]
        for prefix, name in _DATA_PREFIXES.items():
            if head.startswith(prefix):
                encoded = memoryview(payload)[len(prefix) : -len(_DATA_SUFFIX)]
                return {"_data": (name, encoded)}
    return json.loads(payload) if payload else {}


async def envelopes(content_type: str, body: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, Message]]:
    """The envelopes of a streaming body. Received chunks are joined once a whole message is in
    (one copy per message, however many reads it took), not on every read."""
    raw = content_type.startswith(CONNECT_RAW_OUTPUT)
    chunks: list[bytes] = []
    have, need = 0, 5  # bytes held; bytes needed before the next message can be parsed
    async for chunk in body:
        chunks.append(chunk)
        have += len(chunk)
        if have < need:
            continue
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        view = memoryview(buffer)
        offset, need = 0, 5
        while len(buffer) - offset >= 5:
            flags, length = struct.unpack_from(">BI", buffer, offset)
            if len(buffer) - offset < 5 + length:
                need = 5 + length
                break
            message = _decode(flags, view[offset + 5 : offset + 5 + length], raw)
            offset += 5 + length
            yield flags, message
        rest = buffer[offset:] if offset else buffer
        chunks = [rest] if rest else []
        have = len(rest)
    if have:
        raise EnvdError("internal", "stream ended inside a message")


async def until_end(messages: AsyncIterator[tuple[int, Message]]) -> AsyncIterator[Message]:
    """The messages before the end-of-stream one, whose error (if any) is raised. The body is
    read to its end even after that message, so the connection can be reused."""
    end: Message | None = None
    async for flags, payload in messages:
        if flags & END_STREAM:
            end = payload
        elif end is None:
            yield payload
    if end is None:
        raise EnvdUnavailable("stream from envd ended without an end-of-stream message")
    error = end.get("error")
    if error:
        raise error_from_end(error)


def process_event(raw: Mapping[str, Any]) -> ProcessEvent | None:
    """A `process.Process` stream message as a value; None for keepalives."""
    if "_raw" in raw:
        return ProcessOutput(*raw["_raw"])
    if "_data" in raw:
        stream: Stream = raw["_data"][0]
        return ProcessOutput(stream, binascii.a2b_base64(raw["_data"][1]))
    event = raw.get("event") or {}
    if "data" in event:
        data = event["data"]
        for name in _STREAMS:
            if name in data:
                return ProcessOutput(name, base64.b64decode(data[name]))
        return None
    if "start" in event:
        return ProcessStarted(int(event["start"].get("pid", 0)))
    if "end" in event:
        end = event["end"]
        return ProcessEnded(
            exit_code=int(end.get("exitCode", 0)),
            exited=bool(end.get("exited", False)),
            status=end.get("status", ""),
            error=end.get("error"),
        )
    return None  # keepalive


def _unix_seconds(rfc3339: str) -> int:
    main = rfc3339.rstrip("Z").partition(".")[0]
    return int(datetime.fromisoformat(main + "+00:00").timestamp())


def file_entry(raw: Mapping[str, Any]) -> FileEntry:
    """A `filesystem.EntryInfo` as the contract's `FileEntry` (`modified_at` in whole seconds)."""
    modified = raw.get("modifiedTime")
    return FileEntry(
        name=raw.get("name", ""),
        path=raw.get("path", ""),
        type=_ENTRY_TYPES.get(raw.get("type", ""), "file"),
        size=int(raw.get("size", 0)),
        mode=int(raw.get("mode", 0)),
        permissions=raw.get("permissions", ""),
        owner=raw.get("owner", ""),
        group=raw.get("group", ""),
        modified_at=_unix_seconds(modified) if modified else 0,
        symlink_target=raw.get("symlinkTarget"),
    )


def rfc3339(timestamp: float) -> str:
    """Unix seconds as the RFC 3339 timestamp with microseconds that `/init` takes."""
    whole = int(timestamp)
    micros = min(round((timestamp - whole) * 1e6), 999_999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"
