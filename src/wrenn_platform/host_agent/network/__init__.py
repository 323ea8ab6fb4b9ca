"""Network slots shared by both runtimes: leases, netns + veth, one nftables table for all."""

from .dns import upstream_dns_servers
from .leases import NoFreeSlot
from .slots import (
    allocate_slot,
    netns_path,
    reclaim_slots,
    release_slot,
    setup_slot_network,
    slot_for_index,
    teardown_slot_network,
)

__all__ = [
    "NoFreeSlot",
    "allocate_slot",
    "netns_path",
    "reclaim_slots",
    "release_slot",
    "setup_slot_network",
    "slot_for_index",
    "teardown_slot_network",
    "upstream_dns_servers",
]
