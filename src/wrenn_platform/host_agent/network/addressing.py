"""Slot numbering: every name and address of a slot follows from its index alone.

Slots are /30 networks carved out of one private /16 (10.11.0.0/16 by default, 16,384 slots).
In slot N the host end of the veth (the capsule's gateway) is the first address of the /30 and
the capsule (or, for a microVM, the slot netns' eth0 that DNATs to the VM) is the second.
Interface and netns names share a prefix so one nftables table can match every slot by wildcard.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SLOT_SUBNET = ipaddress.IPv4Network("10.11.0.0/16")
SLOT_PREFIX_LEN = 30
MAX_SLOTS = SLOT_SUBNET.num_addresses // 4

NETNS_PREFIX = "wrn-slot-"  # /run/netns/wrn-slot-<N>
HOST_IFACE_PREFIX = "wrns"  # host-side veth "wrns<N>" (IFNAMSIZ: at most 15 characters)
GUEST_IFACE = "eth0"


@dataclass(frozen=True)
class SlotAddresses:
    index: int
    netns: str
    host_iface: str
    gateway_ip: str  # host end of the veth
    slot_ip: str  # inside end (eth0 in the slot netns)
    network: str  # the /30, e.g. "10.11.0.4/30"


def slot_addresses(index: int) -> SlotAddresses:
    if not 0 <= index < MAX_SLOTS:
        raise ValueError(f"slot index {index} out of range 0..{MAX_SLOTS - 1}")
    base = int(SLOT_SUBNET.network_address) + 4 * index
    return SlotAddresses(
        index=index,
        netns=f"{NETNS_PREFIX}{index}",
        host_iface=f"{HOST_IFACE_PREFIX}{index}",
        gateway_ip=str(ipaddress.IPv4Address(base + 1)),
        slot_ip=str(ipaddress.IPv4Address(base + 2)),
        network=f"{ipaddress.IPv4Address(base)}/{SLOT_PREFIX_LEN}",
    )
