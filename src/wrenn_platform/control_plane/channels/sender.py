"""Send one provider request and classify the answer: delivered, retry later, or give up.

Destinations are tenant-supplied URLs: unless the operator allows it, a request whose host
resolves to any non-global address (loopback, private, link-local, CGNAT, reserved) is refused
before it is sent, so a channel cannot be used to reach the control plane's own network (SSRF).
The check resolves the name just before the request; a DNS answer that changes between the check
and httpx's own lookup is not covered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .providers import Outgoing

_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Result:
    ok: bool
    retry: bool  # worth another attempt (network error, 5xx, 408/425/429)
    status_code: int | None
    error: str
    duration_ms: int
    retry_after: float | None = None


async def refused_destination(url: str) -> str | None:
    """Why `url` must not be requested (a non-global address), or None when it may."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            return f"destination {host!r} resolves to a non-public address ({address}): refused"
    return None


async def send(client: httpx.AsyncClient, request: Outgoing, timeout_s: float, *, allow_private: bool) -> Result:
    started = time.monotonic()
    if not allow_private and (refusal := await refused_destination(request.url)) is not None:
        return Result(False, False, None, refusal, 0)
    try:
        response = await client.request(request.method, request.url, content=request.body,
                                        headers=request.headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return Result(False, True, None, f"{type(exc).__name__}: {exc}"[:1000], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    code = response.status_code
    if 200 <= code < 300:
        return Result(True, False, code, "", elapsed)
    retry_after = None
    header = response.headers.get("retry-after", "")
    if header.replace(".", "", 1).isdigit():
        retry_after = float(header)
    retry = code >= 500 or code in _RETRY_STATUSES
    return Result(False, retry, code, f"HTTP {code}: {response.text[:500]}", elapsed, retry_after)
