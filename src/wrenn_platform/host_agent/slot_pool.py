"""The agent's view of the network module: lease slots for capsules, give them back, and after a
restart give back whatever this agent leased that no re-adopted capsule still uses."""

from __future__ import annotations

from pathlib import Path

from wrenn_platform.host_agent.network import allocate_slot, reclaim_slots, release_slot
from wrenn_platform.host_agent.network.leases import DEFAULT_LEASE_DIR
from wrenn_platform.host_agent.network.slots import SlotHook
from wrenn_platform.host_agent.runtime.base import NetworkSlot


class LeasedSlots:
    def __init__(self, owner: str, lease_dir: Path = DEFAULT_LEASE_DIR, configure: SlotHook | None = None):
        self.owner = owner  # leases are tagged with it; one owner per agent (its data dir)
        self.lease_dir = lease_dir
        self.configure = configure  # the microvm runtime's hook (TAP, DNAT) run inside the new slot

    async def allocate(self, holder: str) -> NetworkSlot:
        return await allocate_slot(self.owner, holder, lease_dir=self.lease_dir, configure=self.configure)

    async def release(self, slot: NetworkSlot) -> None:
        await release_slot(slot, lease_dir=self.lease_dir)

    async def reclaim(self, keep: set[int]) -> list[int]:
        return await reclaim_slots(self.owner, keep, lease_dir=self.lease_dir)
