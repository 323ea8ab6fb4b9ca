"""What the hosts' warm pools hold, as their agents last reported it (`AgentInfo.warm_pools`).

The create path asks `hosts_for(key)`: the hosts to prefer (those that had a capsule of the key
ready) and the hosts worth a claim at all (those that keep a pool of the key, ready or not: the
view may be a refill behind). A host without a pool of the key is never asked, so a request of
another shape costs nothing; a claim that misses costs one call to the agent (in process for the
embedded agent) before the cold path. The view is refreshed in the background at most every
`refresh_s` while creates come in; one older than `stale_s` (nothing asked for a while, or never)
is refreshed before answering (all hosts at once: one round trip), bounded by `timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from wrenn_platform.wire.warm_pool import PoolKey

from .agents import AgentRegistry

log = logging.getLogger(__name__)


class WarmView:
    def __init__(self, agents: AgentRegistry, refresh_s: float = 0.5, stale_s: float = 5.0,
                 timeout_s: float = 1.0) -> None:
        self.agents = agents
        self.refresh_s, self.stale_s, self.timeout_s = refresh_s, stale_s, timeout_s
        self._pools: dict[str, dict[PoolKey, int]] = {}  # host → key → ready (kept: size > 0)
        self._at = 0.0  # monotonic time of the last refresh
        self._task: asyncio.Task[None] | None = None

    async def hosts_for(self, key: PoolKey) -> tuple[set[str], set[str]]:
        """(hosts that had a capsule of `key` ready, hosts that keep a pool of `key`)."""
        age = time.monotonic() - self._at
        if age > self.stale_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh(), self.timeout_s)
        elif age > self.refresh_s and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh(), name="warm-view-refresh")
        pooled = {host for host, pools in self._pools.items() if key in pools}
        return {host for host in pooled if self._pools[host][key] > 0}, pooled

    def took(self, host_id: str, key: PoolKey) -> None:
        pools = self._pools.get(host_id)
        if pools and pools.get(key, 0) > 0:
            pools[key] -= 1

    def empty(self, host_id: str, key: PoolKey) -> None:
        """The host answered a claim with a miss: nothing ready there until it says otherwise."""
        pools = self._pools.get(host_id)
        if pools and key in pools:
            pools[key] = 0

    async def _refresh(self) -> None:
        hosts = self.agents.items()
        answers = await asyncio.gather(*(asyncio.wait_for(client.info(), self.timeout_s) for _, client in hosts),
                                       return_exceptions=True)
        found: dict[str, dict[PoolKey, int]] = {}
        for (host_id, _), info in zip(hosts, answers, strict=True):
            if isinstance(info, BaseException):  # an unreachable host holds nothing we can claim
                log.debug("warm view: no info from %s: %s", host_id, info)
                continue
            found[host_id] = {pool.key: pool.ready for pool in info.warm_pools if pool.size > 0}
        self._pools, self._at = found, time.monotonic()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

