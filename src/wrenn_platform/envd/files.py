"""HTTP `/files`: stream a file's bytes out (GET) or in (POST, written atomically)."""

from __future__ import annotations

import asyncio
import json
import os

from . import fsops
from .connect import HTTP_STATUS, RpcError, from_os_error
from .httpio import BadRequest, Request, Response
from .rpc_filesystem import resolve_path
from .state import AgentState
from .users import FsIdentities, User

CHUNK = 1024 * 1024


async def send_error(response: Response, error: RpcError) -> None:
    status = HTTP_STATUS.get(error.code, 500)
    if error.code == "resource_exhausted" and "disk space" in error.message:
        status = 507
    body = json.dumps({"code": status, "message": error.message}).encode()
    await response.send(status, body)


class FilesHandler:
    def __init__(self, fs: FsIdentities, state: AgentState) -> None:
        self.fs = fs
        self.state = state

    async def handle(self, request: Request, response: Response) -> None:
        try:
            user = self.state.user_for(request.query.get("username"), request.headers.get("authorization"))
            path = resolve_path(request.query.get("path"), user)
            if request.method == "GET":
                await self._download(request, response, user, path)
            elif request.method == "POST":
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
        loop = asyncio.get_running_loop()
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

    async def _upload(self, request: Request, response: Response, user: User, path: str) -> None:
        content_type = request.headers.get("content-type", "application/octet-stream")
        if content_type.startswith("multipart/"):
            raise RpcError("invalid_argument", "send the file as application/octet-stream")
        try:
            fd, temp = await self.fs.run(user, fsops.open_temp_for_write, path)
        except OSError as exc:
            raise from_os_error(exc, path) from None
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            # Batches of ~1 MiB go to a thread (one writev each) while the next one is received.
            async for data in request.iter_body(CHUNK):
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
                await asyncio.gather(pending, return_exceptions=True)
            await loop.run_in_executor(None, fsops.discard_temp, fd, temp)
            if isinstance(exc, OSError):
                raise from_os_error(exc, path) from None
            raise
        try:
            entry = await self.fs.run(user, fsops.commit_temp, fd, temp, path)
        except OSError as exc:
            raise from_os_error(exc, path) from None
        body = [{"name": entry["name"], "type": "file", "path": entry["path"]}]
        await response.send(200, json.dumps(body).encode())
