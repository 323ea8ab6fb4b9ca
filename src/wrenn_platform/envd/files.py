"""HTTP `/files`: stream a file's bytes out (GET) or in (POST, written atomically)."""

from __future__ import annotations

import os

from . import aio, fsops
from .connect import HTTP_STATUS, RpcError, from_os_error
from .httpio import BadRequest, Request, Response
from .multipart import MultipartReader, boundary_of
from .rpc_filesystem import resolve_path
from .state import AgentState
from .users import FsIdentities, User

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Any

CHUNK = 1024 * 1024


async def send_error(response: Response, error: RpcError) -> None:
    status = HTTP_STATUS.get(error.code, 500)
    if error.code == "resource_exhausted" and "disk space" in error.message:
        status = 507
    import json

    body = json.dumps({"code": status, "message": error.message}).encode()
    await response.send(status, body)


METADATA_HEADER = "x-metadata-"
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")


def metadata_from_headers(headers: dict[str, str]) -> dict[str, str]:
    """E2B's upload metadata: `X-Metadata-<key>: <value>` headers, keys lowercased (header names
    are), keys HTTP tokens and values printable ASCII."""
    metadata: dict[str, str] = {}
    for name, value in headers.items():
        if not name.startswith(METADATA_HEADER):
            continue
        key = name[len(METADATA_HEADER):]
        if not key or not set(key) <= _TOKEN:
            raise RpcError("invalid_argument", f"invalid metadata key {key!r}")
        if not all(" " <= c <= "~" for c in value):
            raise RpcError("invalid_argument", f"invalid metadata value for {key!r}: printable ASCII only")
        metadata[key] = value
    return metadata


class FilesHandler:
    def __init__(self, fs: FsIdentities, state: AgentState) -> None:
        self.fs = fs
        self.state = state

    async def handle(self, request: Request, response: Response) -> None:
        try:
            user = self.state.user_for(request.query.get("username"), request.headers.get("authorization"))
            raw_path = request.query.get("path")
            if request.method == "GET":
                await self._download(request, response, user, resolve_path(raw_path, user))
            elif request.method == "POST":
                path = resolve_path(raw_path, user) if raw_path else None
                await self._upload(request, response, user, path)
            else:
                raise RpcError("invalid_argument", "use GET or POST")
        except RpcError as exc:
            if response.started:
                response.keep_alive = False
                return
            if not request.body_done:
                # Read the rest of an upload we refuse, so the client sees this answer rather
                # than a broken pipe.
                try:
                    while await request.read_some():
                        pass
                except (BadRequest, ConnectionError):
                    response.keep_alive = False
                    return
            await send_error(response, exc)

    async def _download(self, request: Request, response: Response, user: User, path: str) -> None:
        try:
            fd, size = await self.fs.run(user, fsops.open_for_read, path)
        except OSError as exc:
            raise from_os_error(exc, path) from None
        loop = aio.get_running_loop()
        try:
            await response.start(200, {"Content-Type": "application/octet-stream"}, content_length=size)
            sent = 0
            while sent < size:
                data = await loop.run_in_executor(None, os.read, fd, min(CHUNK, size - sent))
                if not data:  # truncated while being read: the promised length cannot be kept
                    response.keep_alive = False
                    return
                await response.write(data)
                sent += len(data)
            await response.end()
        except ConnectionError:
            response.keep_alive = False
        finally:
            os.close(fd)

    async def _upload(self, request: Request, response: Response, user: User, path: str | None) -> None:
        content_type = request.headers.get("content-type", "application/octet-stream")
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", "gzip"):
            raise RpcError("invalid_argument", f"unsupported Content-Encoding {encoding!r}")
        metadata = metadata_from_headers(request.headers)
        written: list[dict[str, Any]] = []
        if content_type.lower().startswith("multipart/form-data"):
            if encoding != "identity":
                raise RpcError("invalid_argument", "multipart uploads cannot be compressed")
            reader = MultipartReader(request, boundary_of(content_type))
            while (filename := await reader.next_part()) is not None:
                # The query's path names the first file (E2B sends it for single uploads).
                target = path or resolve_path(filename, user, "file name")
                path = None
                written.append(await self._write(user, target, reader.part_data(), metadata))
        else:
            if path is None:
                raise RpcError("invalid_argument", "path is required")
            chunks = request.iter_body(CHUNK)
            chunks = gunzip(chunks) if encoding == "gzip" else chunks
            written.append(await self._write(user, path, chunks, metadata))
        body = [{"name": e["name"], "type": "file", "path": e["path"],
                 **({"metadata": e["metadata"]} if "metadata" in e else {})} for e in written]
        import json

        await response.send(200, json.dumps(body).encode())

    async def _write(self, user: User, path: str, chunks: AsyncIterator[bytes],
                     metadata: dict[str, str]) -> dict[str, Any]:
        """Stream `chunks` into a temporary file next to `path`, then rename it over `path`."""
        try:
            fd, temp = await self.fs.run(user, fsops.open_temp_for_write, path)
        except OSError as exc:
            raise from_os_error(exc, path) from None
        loop = aio.get_running_loop()
        pending: aio.Future | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            # Batches of ~1 MiB go to a thread (one writev each) while the next one is received.
            async for data in chunks:
                batch.append(data)
                batched += len(data)
                if batched < CHUNK:
                    continue
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, fsops.write_all, fd, batch)
                batch, batched = [], 0
            if pending is not None:
                await pending
                pending = None
            if batch:
                await loop.run_in_executor(None, fsops.write_all, fd, batch)
        except BaseException as exc:
            if pending is not None:
                await aio.gather(pending, return_exceptions=True)
            await loop.run_in_executor(None, fsops.discard_temp, fd, temp)
            if isinstance(exc, OSError):
                raise from_os_error(exc, path) from None
            raise
        try:
            return await self.fs.run(user, fsops.commit_temp, fd, temp, path, metadata)
        except OSError as exc:
            raise from_os_error(exc, path) from None


async def gunzip(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Decompress a gzip stream chunk by chunk, never more than CHUNK of output at once."""
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        async for data in chunks:
            while data:
                out = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
        tail = inflater.flush()
        if tail:
            yield tail
        if not inflater.eof:
            raise BadRequest("gzip body is truncated")
    except zlib.error as exc:
        raise BadRequest(f"bad gzip body: {exc}") from None
