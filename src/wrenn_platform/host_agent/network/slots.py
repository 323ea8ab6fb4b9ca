"""Network slots: allocate (lease + netns + veth + addresses), release (conntrack, netns, lease).

Usage by a runtime or the agent::

    slot = await allocate_slot(owner="/var/lib/wrenn", holder="cl-abc")
    ...  # namespace runtime: `nsenter --net=/run/netns/<slot.netns> bwrap ...`
    await release_slot(slot)

The slot netns holds `eth0` (the slot IP, default route via the host end of the veth). For the
namespace runtime the capsule lives directly in that netns, so `guest_ip == host_ip`. The microvm
runtime adds its TAP and DNAT/SNAT inside the same netns (`configure=` hook, run before the slot is
returned; or later with `ip -n <slot.netns> ...` / `nft` in the netns) and returns
`dataclasses.replace(slot, guest_ip=<in-VM address>)`; `host_ip` stays the slot IP the host routes
to. Everything created inside the slot netns disappears with it on release.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path

from wrenn_platform.host_agent.runtime.base import NetworkSlot

from . import leases, nftables
from ._proc import remove_netns_file, run
from .addressing import GUEST_IFACE, NETNS_PREFIX, SLOT_PREFIX_LEN, slot_addresses
from .dns import upstream_dns_servers

NETNS_DIR = Path("/run/netns")
SlotHook = Callable[[NetworkSlot], Awaitable[None]]


def slot_for_index(index: int, dns_servers: tuple[str, ...] | None = None) -> NetworkSlot:
    a = slot_addresses(index)
    return NetworkSlot(
        index=index,
        netns=a.netns,
        host_ip=a.slot_ip,
        guest_ip=a.slot_ip,
        gateway_ip=a.gateway_ip,
        prefix_len=SLOT_PREFIX_LEN,
        host_iface=a.host_iface,
        dns_servers=upstream_dns_servers() if dns_servers is None else dns_servers,
    )


def netns_path(slot: NetworkSlot) -> Path:
    return NETNS_DIR / slot.netns


async def _remove_netns(name: str) -> None:
    path = NETNS_DIR / name
    if await asyncio.to_thread(path.exists):
        await asyncio.to_thread(remove_netns_file, path)


async def _remove_host_link(iface: str) -> None:
    # Removing a netns leaves its veth pair to the kernel's asynchronous namespace cleanup (here 29
    # of 30 pairs still existed right after the netns was gone): the pair outlived the capsule, and
    # a slot leased again before the cleanup ran could not create it ("File exists"). Deleting one
    # end removes both at once (~15 ms: the kernel waits for an RCU grace period).
    if await asyncio.to_thread(Path(f"/sys/class/net/{iface}").exists):
        await run(["ip", "link", "del", iface], check=False)


async def _flush_conntrack(slot: NetworkSlot) -> None:
    # Without this hundreds of entries for the slot linger after the netns is gone, and would
    # apply to the next capsule given the same slot. The /30 as source covers the capsule's own
    # connections and the host's (sourced from the gateway address); the slot IP as destination
    # covers host connections bound to another source. Exit status 1: nothing to delete.
    network = f"{ipaddress.ip_interface(f'{slot.host_ip}/{slot.prefix_len}').network}"
    await asyncio.gather(
        run(["conntrack", "-D", "-s", network], check=False),
        run(["conntrack", "-D", "-d", slot.host_ip], check=False),
    )


async def setup_slot_network(slot: NetworkSlot) -> None:
    """Create the slot's netns, veth pair and addresses (the lease must already be held)."""
    # Left by a crash between netns creation and lease release:
    await _remove_host_link(slot.host_iface)
    await _remove_netns(slot.netns)
    await run(
        ["ip", "-batch", "-"],
        f"netns add {slot.netns}\n"
        f"link add {slot.host_iface} type veth peer name {GUEST_IFACE} netns {slot.netns}\n"
        f"link set {slot.host_iface} addrgenmode none\n"
        f"addr add {slot.gateway_ip}/{slot.prefix_len} dev {slot.host_iface}\n"
        f"link set {slot.host_iface} up\n",
    )
    await run(
        ["ip", "-n", slot.netns, "-batch", "-"],
        "link set lo up\n"
        f"link set {GUEST_IFACE} addrgenmode none\n"
        f"addr add {slot.host_ip}/{slot.prefix_len} dev {GUEST_IFACE}\n"
        f"link set {GUEST_IFACE} up\n"
        f"route add default via {slot.gateway_ip}\n",
    )


async def teardown_slot_network(slot: NetworkSlot) -> None:
    """Remove the veth pair and the netns, then the slot's conntrack entries.

    In that order: once the veth is gone nothing can create a new entry for the slot IP, so the
    next capsule on this slot starts with none."""
    await _remove_host_link(slot.host_iface)
    await _remove_netns(slot.netns)
    await _flush_conntrack(slot)


async def allocate_slot(
    owner: str,
    holder: str,
    *,
    lease_dir: Path = leases.DEFAULT_LEASE_DIR,
    dns_servers: tuple[str, ...] | None = None,
    configure: SlotHook | None = None,
) -> NetworkSlot:
    """Lease a free slot, build its network, run `configure` on it; on failure undo everything."""
    lease = await asyncio.to_thread(leases.acquire, owner, holder, lease_dir)
    slot = slot_for_index(lease.index, dns_servers)
    try:
        results = await asyncio.gather(nftables.ensure_installed(), setup_slot_network(slot), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if configure is not None:
            await configure(slot)
    except BaseException:
        await release_slot(slot, lease_dir=lease_dir)
        raise
    return slot


async def release_slot(slot: NetworkSlot, *, lease_dir: Path = leases.DEFAULT_LEASE_DIR) -> None:
    """Tear the slot's network down and free its lease. Idempotent."""
    await teardown_slot_network(slot)
    await asyncio.to_thread(leases.release, slot.index, lease_dir)


async def reclaim_slots(owner: str, keep: set[int], *, lease_dir: Path = leases.DEFAULT_LEASE_DIR) -> list[int]:
    """Release the slots leased by `owner` that are not in `keep` (after an agent restart)."""
    released = []
    for lease in await asyncio.to_thread(leases.list_leases, lease_dir):
        if lease.owner == owner and lease.index not in keep:
            await release_slot(slot_for_index(lease.index, ()), lease_dir=lease_dir)
            released.append(lease.index)
    return released


def slot_netns_names() -> set[str]:
    """Names of slot netns that exist on the machine (any agent's)."""
    if not NETNS_DIR.is_dir():
        return set()
    return {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX)}
