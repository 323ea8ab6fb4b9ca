"""Which requests are for a capsule's port: Host `{port}-{capsule_id}.{proxy domain}`."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_LABEL = re.compile(rb"([0-9]{1,5})-([a-z0-9][a-z0-9_-]{0,63})")


def proxy_domain(configured: str, public_url: str) -> str:
    """The domain capsule ports live under, without a port: `WRENN_PROXY_DOMAIN`, else the public
    URL's host — `localhost` when that is an IP address (nothing resolves `*.127.0.0.1`)."""
    host = urlsplit("//" + configured.strip()).hostname if configured.strip() else urlsplit(public_url).hostname
    domain = (host or "localhost").strip(".")
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return domain
    return "localhost"


class HostMatcher:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self._suffix = b"." + domain.encode("ascii")

    def match(self, host: bytes) -> tuple[int, str] | None:
        """(port, capsule id) when `host` (a Host header, maybe with `:port`) names a capsule port."""
        name = host.rpartition(b":")[0] if host[-1:].isdigit() and b":" in host else host
        name = name.lower().rstrip(b".")
        if not name.endswith(self._suffix):
            return None
        found = _LABEL.fullmatch(name[: -len(self._suffix)])
        if found is None:
            return None
        return int(found.group(1)), found.group(2).decode("ascii")
