"""The `filesystem.Filesystem` Connect service (unary calls)."""

from __future__ import annotations

import os
from typing import Any

from . import fsops
from .connect import RpcError, from_os_error
from .httpio import Request
from .state import AgentState
from .users import FsIdentities, User

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
