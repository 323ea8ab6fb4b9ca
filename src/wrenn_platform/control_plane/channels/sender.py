"""Send one provider request and classify the answer: delivered, retry later, or give up."""

from __future__ import annotations

import time
from dataclasses import dataclass

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


async def send(client: httpx.AsyncClient, request: Outgoing, timeout_s: float) -> Result:
    started = time.monotonic()
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
