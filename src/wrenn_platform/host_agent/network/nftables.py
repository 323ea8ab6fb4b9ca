"""The one nftables table shared by every slot of every agent on the machine.

Rules match slot interfaces by the name wildcard `wrns*`, so adding or removing a slot never
touches the ruleset (no per-slot rules to leak). The table is replaced atomically with one
`nft -f` transaction that starts with `delete table`: the rules are never absent, and since every
agent installs identical content (versioned by the table comment) one agent re-installing it
while another agent's capsules run changes nothing for them. Agents never delete the table.

Policy, for traffic entering from a slot:
- IPv6 is dropped; a source address that does not route back through the same interface
  (spoofing) is dropped;
- to the host itself (any local address: agent, control plane, databases) only replies to
  connections the host opened are accepted, the rest is rejected;
- to another slot, to every address IANA's special-purpose registry marks not globally reachable
  (private, shared/CGNAT, loopback, link-local with the cloud metadata 169.254.169.254,
  documentation, benchmarking, reserved) and to multicast and broadcast, it is rejected -- and so
  is every subnet the host has an address on, whatever its range (a LAN on public or
  documentation addresses is still the host's own network). The host's subnets are read when the
  table is built, which is at agent start and at every slot allocation, so a new address gets
  its rule before the next capsule. Except DNS (port 53) to the host's own upstream resolvers,
  which are often on a private address; nothing from outside may open a connection into a slot;
- everything else is forwarded and masqueraded (egress NAT).
`reject with icmpx admin-prohibited` rather than drop: the caller fails at once instead of
waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import subprocess

from .addressing import HOST_IFACE_PREFIX, SLOT_SUBNET
from .dns import upstream_dns_servers

TABLE_FAMILY = "inet"
TABLE_NAME = "wrenn"
# IANA IPv4 special-purpose registry, every entry not globally reachable (RFC 6890 and updates),
# plus multicast; the slots' own range first. IPv6 needs no list: slots send none (dropped below).
BLOCKED_DESTINATIONS = (
    str(SLOT_SUBNET),
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (CGNAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # TEST-NET-1 (documentation)
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
)

_REJECT = "reject with icmpx admin-prohibited"


def host_networks() -> tuple[str, ...]:
    """Every IPv4 subnet the host has an address on (its LAN, a VPN, a bridge...), but the slots'."""
    proc = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=True)
    networks: set[str] = set()
    for link in json.loads(proc.stdout or "[]"):
        if str(link.get("ifname", "")).startswith(HOST_IFACE_PREFIX):
            continue
        for address in link.get("addr_info", ()):
            network = ipaddress.ip_interface(f"{address['local']}/{address['prefixlen']}").network
            if isinstance(network, ipaddress.IPv4Network) and not network.subnet_of(SLOT_SUBNET):
                networks.add(str(network))
    return tuple(sorted(networks))


def blocked_destinations(host_nets: tuple[str, ...]) -> list[str]:
    """The fixed list and the host's subnets, overlaps merged (an interval set refuses them)."""
    networks = [ipaddress.IPv4Network(n) for n in (*BLOCKED_DESTINATIONS, *host_nets)]
    return [str(n) for n in ipaddress.collapse_addresses(networks)]


def _rules(dns_servers: tuple[str, ...], host_nets: tuple[str, ...]) -> str:
    slots = f'"{HOST_IFACE_PREFIX}*"'
    blocked = ", ".join(blocked_destinations(host_nets))
    resolvers = f"elements = {{ {', '.join(dns_servers)} }}" if dns_servers else ""
    return f"""\
    set blocked_v4 {{
        type ipv4_addr; flags interval; auto-merge
        elements = {{ {blocked} }}
    }}
    set resolvers_v4 {{
        type ipv4_addr
        {resolvers}
    }}
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        iifname {slots} meta nfproto ipv6 drop
        iifname {slots} fib saddr . iif oif missing drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname {slots} ct state established,related accept
        iifname {slots} {_REJECT}
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        oifname {slots} ct state established,related accept
        oifname {slots} {_REJECT}
        iifname {slots} ip daddr @resolvers_v4 meta l4proto {{ tcp, udp }} th dport 53 accept
        iifname {slots} ip daddr @blocked_v4 {_REJECT}
        iifname {slots} accept
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        iifname {slots} oifname != {slots} masquerade
    }}"""


def table_version(dns_servers: tuple[str, ...], host_nets: tuple[str, ...] = ()) -> str:
    """Identical rules give an identical version, so agents on one machine never fight over it."""
    return "wrenn-slots-" + hashlib.sha256(_rules(dns_servers, host_nets).encode()).hexdigest()[:16]


def ruleset(dns_servers: tuple[str, ...] | None = None, host_nets: tuple[str, ...] | None = None) -> str:
    servers = upstream_dns_servers() if dns_servers is None else dns_servers
    nets = host_networks() if host_nets is None else host_nets
    return f"""\
table {TABLE_FAMILY} {TABLE_NAME}
delete table {TABLE_FAMILY} {TABLE_NAME}
table {TABLE_FAMILY} {TABLE_NAME} {{
    comment "{table_version(servers, nets)}"
{_rules(servers, nets)}
}}
"""


def installed_version() -> str | None:
    proc = subprocess.run(
        ["nft", "list", "table", TABLE_FAMILY, TABLE_NAME], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("comment "):
            return line.split('"')[1]
    return ""


def _has_unreachable_route() -> bool:
    rtf_reject = 0x0200
    destination = f"{int.from_bytes(SLOT_SUBNET.network_address.packed, 'little'):08X}"
    mask = f"{int.from_bytes(SLOT_SUBNET.netmask.packed, 'little'):08X}"
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == destination and fields[7] == mask and int(fields[3], 16) & rtf_reject:
                return True
    return False


def install() -> None:
    """Install (or upgrade) the table and enable forwarding. Idempotent and safe to race."""
    servers, nets = upstream_dns_servers(), host_networks()
    if installed_version() != table_version(servers, nets):
        proc = subprocess.run(
            ["nft", "-f", "-"], input=ruleset(servers, nets), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise OSError(f"nft failed: {proc.stderr.strip()}")
    # Traffic to a slot address with no live slot fails at once (EHOSTUNREACH) instead of
    # leaving through the default route and recreating conntrack entries for released slots;
    # each live slot's connected /30 is more specific.
    if not _has_unreachable_route():
        subprocess.run(["ip", "route", "replace", "unreachable", str(SLOT_SUBNET)], capture_output=True, check=True)
    # Forwarding is off on a fresh machine, and then egress silently times out.
    with open("/proc/sys/net/ipv4/ip_forward", "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")


async def ensure_installed() -> None:
    """Check the table and (re)install it when missing or outdated.

    Checked on every slot allocation rather than once per process: an operator's
    `nft flush ruleset` or another tool replacing the ruleset must not leave new capsules
    unprotected. The check is one `nft list table`, run alongside the slot's own set-up."""
    await asyncio.to_thread(install)
