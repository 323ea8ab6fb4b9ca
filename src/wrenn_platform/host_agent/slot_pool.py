"""The agent's view of the network module: lease slots for capsules, give them back, and after a
restart give back whatever this agent leased that no re-adopted capsule still uses.

Building a slot (netns, veth, addresses) takes 10-40 ms of `ip` calls; `spare` slots are kept
built ahead so a create does not wait for them. Spares are leased like any slot (holder
"spare"), so a crash leaves nothing the next agent's `reclaim` does not release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from wrenn_platform.host_agent.network import allocate_slot, reclaim_slots, release_slot
from wrenn_platform.host_agent.network.leases import DEFAULT_LEASE_DIR
from wrenn_platform.host_agent.network.slots import SlotHook
from wrenn_platform.host_agent.runtime.base import NetworkSlot

log = logging.getLogger(__name__)


class LeasedSlots:
    def __init__(self, owner: str, lease_dir: Path = DEFAULT_LEASE_DIR, configure: SlotHook | None = None,
                 spare: int = 1) -> None:
        self.owner = owner  # leases are tagged with it; one owner per agent (its data dir)
        self.lease_dir = lease_dir
        self.configure = configure  # a runtime's hook run inside each new slot
        self.spare = spare
        self._ready: list[NetworkSlot] = []
        self._refill: asyncio.Task[None] | None = None

    async def _build(self, holder: str) -> NetworkSlot:
        return await allocate_slot(self.owner, holder, lease_dir=self.lease_dir, configure=self.configure)

    async def allocate(self, holder: str) -> NetworkSlot:
        slot = self._ready.pop() if self._ready else None
        self._top_up()
        return slot if slot is not None else await self._build(holder)

    def _top_up(self) -> None:
        if self.spare > 0 and (self._refill is None or self._refill.done()):
            self._refill = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        while len(self._ready) < self.spare:
            try:
                self._ready.append(await self._build("spare"))
            except Exception as exc:  # no free slot, or the network failed: creates build their own
                log.warning("could not build a spare network slot: %s", exc)
                return

    async def release(self, slot: NetworkSlot) -> None:
        await release_slot(slot, lease_dir=self.lease_dir)

    async def reclaim(self, keep: set[int]) -> list[int]:
        released = await reclaim_slots(self.owner, keep, lease_dir=self.lease_dir)
        self._top_up()
        return released

    async def aclose(self) -> None:
        """Release the spares (capsules' slots stay leased)."""
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        while self._ready:
            await self.release(self._ready.pop())
