"""envd calls the platform itself does not make, spoken here over `EnvdClient`'s protocol-level
calls (`unary`, `server_stream`, `download`), so the tests cover all of envd's surface."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal

import httpx

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError, Selector, codec
from wrenn_platform.wire.api.capsules import FileEntry
from wrenn_platform.wire.envd import CONNECT_JSON, END_STREAM


async def stat(client: EnvdClient, path: str, *, user: str | None = None) -> FileEntry:
    data = await client.unary("filesystem.Filesystem/Stat", {"path": path}, user)
    return codec.file_entry(data["entry"])


async def move(client: EnvdClient, source: str, destination: str, *, user: str | None = None) -> FileEntry:
    data = await client.unary("filesystem.Filesystem/Move", {"source": source, "destination": destination}, user)
    return codec.file_entry(data["entry"])


async def read_file(client: EnvdClient, path: str, *, user: str | None = None) -> bytes:
    return b"".join([chunk async for chunk in client.download(path, user=user)])


async def close_stdin(client: EnvdClient, process: Selector) -> None:
    await client.unary("process.Process/CloseStdin", {"process": codec.selector(process)})


@dataclass(frozen=True)
class WatchStarted:
    """The watch is in place: changes from now on are reported."""


@dataclass(frozen=True)
class FilesystemEvent:
    name: str  # relative to the watched directory
    type: Literal["create", "write", "remove", "rename", "chmod"]
    entry: FileEntry | None = None


_KINDS: dict[str, Literal["create", "write", "remove", "rename", "chmod"]] = {
    "EVENT_TYPE_CREATE": "create",
    "EVENT_TYPE_WRITE": "write",
    "EVENT_TYPE_REMOVE": "remove",
    "EVENT_TYPE_RENAME": "rename",
    "EVENT_TYPE_CHMOD": "chmod",
}


async def watch_dir(
    client: EnvdClient, path: str, *, recursive: bool = False, include_entry: bool = False
) -> AsyncIterator[WatchStarted | FilesystemEvent]:
    message = {"path": path, "recursive": recursive, "includeEntry": include_entry}
    async for payload in client.server_stream("filesystem.Filesystem/WatchDir", message):
        if "start" in payload:
            yield WatchStarted()
        elif "filesystem" in payload:
            raw = payload["filesystem"]
            kind = _KINDS.get(raw.get("type", ""))
            if kind is not None:
                entry = codec.file_entry(raw["entry"]) if raw.get("entry") else None
                yield FilesystemEvent(raw.get("name", ""), kind, entry)


async def stream_input(client: EnvdClient, process: Selector, chunks: AsyncIterable[bytes]) -> None:
    """`process.Process/StreamInput`, a client stream: many input chunks over one call."""

    async def body() -> AsyncIterator[bytes]:
        yield codec.envelope({"start": {"process": codec.selector(process)}})
        async for chunk in chunks:
            yield codec.envelope({"data": {"input": {"stdin": base64.b64encode(chunk).decode()}}})

    headers = {"Content-Type": CONNECT_JSON, "X-Access-Token": client.access_token or ""}
    async with httpx.AsyncClient(base_url=client.base_url) as http:
        r = await http.post("/process.Process/StreamInput", content=body(), headers=headers)
    assert r.status_code == 200, r.text
    offset = 0
    while offset < len(r.content):
        flags, length = struct.unpack_from(">BI", r.content, offset)
        message = json.loads(r.content[offset + 5 : offset + 5 + length] or b"{}")
        offset += 5 + length
        if flags & END_STREAM and message.get("error"):
            raise EnvdError(message["error"].get("code", "unknown"), message["error"].get("message", ""))
