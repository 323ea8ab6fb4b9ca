"""The resolvers a capsule uses: the host's upstream ones, reached through the slot's NAT."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def upstream_dns_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The host's non-loopback IPv4 resolvers (a loopback resolver is unreachable from a slot)."""
    servers: list[str] = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback and not address.is_link_local:
                servers.append(str(address))
    return tuple(servers)
