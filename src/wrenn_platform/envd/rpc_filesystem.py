"""The `filesystem.Filesystem` Connect service (unary calls)."""

from __future__ import annotations

import os

from . import aio, fsops
from .aio import suppress
from .connect import RpcError, end_stream, envelope, from_os_error, read_envelope, start_stream
from .httpio import Request, Response
from .state import AgentState
from .users import FsIdentities, User

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 64


def resolve_path(raw: Any, user: User, field: str = "path") -> str:
    """An absolute, normalised path; relative ones (and `~`) are taken from the user's home."""
    if not isinstance(raw, str) or not raw:
        raise RpcError("invalid_argument", f"{field} is required")
    if "\0" in raw:
        raise RpcError("invalid_argument", f"{field} contains a NUL byte")
    if raw == "~" or raw.startswith("~/"):
        raw = user.home + raw[1:]
    elif not raw.startswith("/"):
        raw = os.path.join(user.home, raw)
    path = os.path.normpath(raw)
    return "/" + path.lstrip("/") if path.startswith("//") else path


class FilesystemService:
    def __init__(self, fs: FsIdentities, state: AgentState) -> None:
        self.fs = fs
        self.state = state

    async def _run(self, request: Request, func: Any, *args: Any) -> Any:
        user = self.state.request_user(request.headers.get("authorization"))
        resolved = [resolve_path(a, user, n) if n else a for n, a in args]
        try:
            return await self.fs.run(user, func, *resolved)
        except OSError as exc:
            raise from_os_error(exc) from None

    async def stat(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        entry = await self._run(request, fsops.stat_entry, ("path", message.get("path")))
        return {"entry": entry}

    async def make_dir(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        entry = await self._run(request, fsops.make_dir, ("path", message.get("path")))
        return {"entry": entry}

    async def move(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        entry = await self._run(
            request,
            fsops.move,
            ("source", message.get("source")),
            ("destination", message.get("destination")),
        )
        return {"entry": entry}

    async def remove(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        await self._run(request, fsops.remove, ("path", message.get("path")))
        return {}

    async def list_dir(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        try:
            depth = int(message.get("depth") or 1)
        except (TypeError, ValueError):
            raise RpcError("invalid_argument", "depth must be an integer") from None
        if not 1 <= depth <= MAX_DEPTH:
            raise RpcError("invalid_argument", f"depth must be between 1 and {MAX_DEPTH}")
        entries = await self._run(request, fsops.list_dir, ("path", message.get("path")), ("", depth))
        return {"entries": entries}

    async def watch_dir(self, request: Request, response: Response) -> None:
        """Server stream: `{start: {}}`, then `{filesystem: {name, type, entry?}}` per change."""
        await start_stream(response)
        try:
            message = await read_envelope(request) or {}
            user = self.state.request_user(request.headers.get("authorization"))
            root = resolve_path(message.get("path"), user)
            include_entry = bool(message.get("includeEntry"))
            from . import watch  # on first use: few capsules watch directories

            try:
                watcher = await self.fs.run(user, watch.open_watcher, root, bool(message.get("recursive")))
            except OSError as exc:
                raise from_os_error(exc, root) from None
        except RpcError as exc:
            await response.end(end_stream(exc))
            return
        loop = aio.get_running_loop()
        ready = aio.Event()

        def on_readable() -> None:
            watcher.read()
            ready.set()

        loop.add_reader(watcher.fd, on_readable)
        disconnected = aio.ensure_future(request.wait_disconnect())
        try:
            await response.write(envelope({"start": {}}))
            while True:
                waiter = aio.ensure_future(ready.wait())
                done, _ = await aio.wait(
                    {waiter, disconnected}, timeout=30.0, return_when=aio.FIRST_COMPLETED
                )
                if disconnected in done:
                    waiter.cancel()
                    response.keep_alive = False
                    return
                if waiter not in done:
                    waiter.cancel()
                    await response.write(envelope({"keepalive": {}}))
                    continue
                ready.clear()
                while watcher.new_dirs:
                    with suppress(OSError):
                        await self.fs.run(user, watcher.add_tree, watcher.new_dirs.pop(), True)
                out: list[bytes] = []
                while watcher.events:
                    name, kind = watcher.events.popleft()
                    event: dict[str, Any] = {"name": name, "type": kind}
                    if include_entry and kind not in ("EVENT_TYPE_REMOVE", "EVENT_TYPE_RENAME"):
                        with suppress(OSError):
                            event["entry"] = await self.fs.run(
                                user, fsops.entry_info, os.path.join(root, name)
                            )
                    out.append(envelope({"filesystem": event}))
                if watcher.overflowed:
                    error = RpcError("resource_exhausted", "too many changes; events were lost")
                    out.append(end_stream(error))
                elif watcher.closed:
                    out.append(end_stream())
                if out:
                    await response.write(b"".join(out))
                if watcher.overflowed or watcher.closed:
                    disconnected.cancel()
                    await aio.gather(disconnected, return_exceptions=True)
                    await response.end()
                    return
        except ConnectionError:
            response.keep_alive = False
        finally:
            disconnected.cancel()
            await aio.gather(disconnected, return_exceptions=True)
            watcher.close()
