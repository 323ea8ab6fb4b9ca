"""What the hosts' warm pools hold, as their agents last reported it (`AgentInfo.warm_pools`).

The create path asks `hosts_with(key)` which hosts to prefer and whether a claim is worth asking
for at all: a host whose pool is known empty is not asked, so a miss costs no round trip. The view
is refreshed in the background at most every `refresh_s` while creates come in; one older than
`stale_s` (nothing asked for a while, or never) is refreshed before answering, bounded by
`timeout_s`. A claim lowers the count at once, so a burst does not ask a pool beyond what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from wrenn_platform.wire.warm_pool import PoolKey, WarmPoolInfo

from .agents import AgentRegistry

log = logging.getLogger(__name__)


class WarmView:
    def __init__(self, agents: AgentRegistry, refresh_s: float = 0.5, stale_s: float = 5.0,
                 timeout_s: float = 1.0) -> None:
        self.agents = agents
        self.refresh_s, self.stale_s, self.timeout_s = refresh_s, stale_s, timeout_s
        self._ready: dict[str, dict[PoolKey, int]] = {}
        self._at = 0.0  # monotonic time of the last refresh
        self._task: asyncio.Task[None] | None = None

    async def hosts_with(self, key: PoolKey) -> set[str]:
        age = time.monotonic() - self._at
        if age > self.stale_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh(), self.timeout_s)
        elif age > self.refresh_s and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh(), name="warm-view-refresh")
        return {host for host, pools in self._ready.items() if pools.get(key, 0) > 0}

    def took(self, host_id: str, key: PoolKey) -> None:
        pools = self._ready.get(host_id)
        if pools and pools.get(key, 0) > 0:
            pools[key] -= 1

    def empty(self, host_id: str, key: PoolKey) -> None:
        """The host answered a claim with a miss: its pool of `key` is empty until it says otherwise."""
        self._ready.get(host_id, {}).pop(key, None)

    async def _refresh(self) -> None:
        ready: dict[str, dict[PoolKey, int]] = {}
        for host_id, client in self.agents.items():
            try:
                info = await asyncio.wait_for(client.info(), self.timeout_s)
            except Exception as exc:  # an unreachable host holds nothing we can claim
                log.debug("warm view: no info from %s: %s", host_id, exc)
                continue
            ready[host_id] = _counts(info.warm_pools)
        self._ready, self._at = ready, time.monotonic()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _counts(pools: list[WarmPoolInfo]) -> dict[PoolKey, int]:
    return {pool.key: pool.ready for pool in pools if pool.ready > 0}
