"""The polling directory watcher of `filesystem.Filesystem` (`CreateWatcher`, `GetWatcherEvents`,
`RemoveWatcher`), which E2B's synchronous client uses instead of the `WatchDir` stream.

A watcher is an inotify instance (`watch.py`) kept between calls; the kernel queues its events
until `GetWatcherEvents` drains them, so nothing runs in between. Directories created under a
recursive watcher are watched from the next call on. A watcher lives until `RemoveWatcher`, or
until its directory goes away (its last events are still delivered; then it is `not_found`).
"""

from __future__ import annotations

import os

from . import fsops
from .aio import suppress
from .connect import RpcError, from_os_error
from .httpio import Request
from .rpc_filesystem import resolve_path
from .state import AgentState
from .users import FsIdentities, User

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .watch import Watcher

MAX_WATCHERS = 256  # each holds an inotify instance (a file descriptor and kernel memory)


class _Polled:
    def __init__(self, watcher: Watcher, user: User, include_entry: bool) -> None:
        self.watcher = watcher
        self.user = user
        self.include_entry = include_entry


class PollingWatchers:
    def __init__(self, fs: FsIdentities, state: AgentState) -> None:
        self.fs = fs
        self.state = state
        self._watchers: dict[str, _Polled] = {}

    async def create(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        if len(self._watchers) >= MAX_WATCHERS:
            raise RpcError("resource_exhausted", f"at most {MAX_WATCHERS} watchers; remove one first")
        user = self.state.request_user(request.headers.get("authorization"))
        root = resolve_path(message.get("path"), user)
        from . import watch  # on first use: few capsules watch directories

        try:
            watcher = await self.fs.run(user, watch.open_watcher, root, bool(message.get("recursive")))
        except OSError as exc:
            raise from_os_error(exc, root) from None
        watcher_id = os.urandom(8).hex()
        self._watchers[watcher_id] = _Polled(watcher, user, bool(message.get("includeEntry")))
        return {"watcherId": watcher_id}

    def _get(self, message: dict[str, Any]) -> tuple[str, _Polled]:
        watcher_id = message.get("watcherId")
        polled = self._watchers.get(watcher_id) if isinstance(watcher_id, str) else None
        if polled is None:
            raise RpcError("not_found", f"watcher {watcher_id!r} not found")
        return str(watcher_id), polled

    async def events(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        watcher_id, polled = self._get(message)
        watcher = polled.watcher
        watcher.read()
        while watcher.new_dirs:
            with suppress(OSError):  # gone again, or unreadable: not watched
                await self.fs.run(polled.user, watcher.add_tree, watcher.new_dirs.pop(), True)
        events: list[dict[str, Any]] = []
        while watcher.events:
            name, kind = watcher.events.popleft()
            event: dict[str, Any] = {"name": name, "type": kind}
            if polled.include_entry and kind not in ("EVENT_TYPE_REMOVE", "EVENT_TYPE_RENAME"):
                with suppress(OSError):
                    event["entry"] = await self.fs.run(polled.user, fsops.entry_info,
                                                       os.path.join(watcher.root, name))
            events.append(event)
        if watcher.overflowed:
            self._close(watcher_id)
            raise RpcError("resource_exhausted", "too many changes between two calls; events were lost")
        if watcher.closed:
            self._close(watcher_id)
        return {"events": events}

    async def remove(self, message: dict[str, Any], request: Request) -> dict[str, Any]:
        watcher_id, _ = self._get(message)
        self._close(watcher_id)
        return {}

    def _close(self, watcher_id: str) -> None:
        polled = self._watchers.pop(watcher_id, None)
        if polled is not None:
            polled.watcher.close()

    def shutdown(self) -> None:
        for watcher_id in list(self._watchers):
            self._close(watcher_id)
