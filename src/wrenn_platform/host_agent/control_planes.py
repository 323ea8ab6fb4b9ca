"""The control planes a joined agent may talk to: any replica serves the host flow (they share the
database and `WRENN_SECRET_KEY`), so an agent given several URLs moves to the next one when the
one it uses fails, and stays there.

`failover_client(urls)` is an `httpx.AsyncClient` whose requests (relative paths) go to the current
URL. A request that could not connect, or that a gateway answered 502/503/504, is sent to the next
URL. A request that may have reached a control plane and then failed (the connection broke, no
answer) is sent again to the next one too, except registration and token refresh: their tokens are
single use, so a second attempt could only be refused (the error is raised and the next request
goes to the next URL).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

log = logging.getLogger(__name__)

_PLACEHOLDER = "http://control-plane"  # the client's base URL; the transport picks the real one
_GATEWAY_FAILURES = frozenset({502, 503, 504})
_SINGLE_USE = ("/v1/hosts/register", "/v1/hosts/auth/refresh")
TIMEOUT = httpx.Timeout(30.0, connect=5.0)  # a control plane that does not answer a connect is skipped soon


def parse_urls(values: Sequence[str]) -> list[str]:
    """`--control-plane` values, each one URL or several separated by commas; order kept, repeats dropped."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"control plane URL must start with http:// or https://: {url!r}")
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ValueError("no control plane URL given")
    return urls


class FailoverTransport(httpx.AsyncBaseTransport):
    def __init__(self, urls: Sequence[str], inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls = list(urls)
        self.current = 0
        self._inner = inner or httpx.AsyncHTTPTransport()

    @property
    def url(self) -> str:
        return self.urls[self.current]

    def _next(self, failed: int, why: object) -> None:
        if self.current == failed and len(self.urls) > 1:
            self.current = (failed + 1) % len(self.urls)
            log.warning("control plane %s failed (%s): using %s", self.urls[failed], why, self.url)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        resend = not target.startswith(_SINGLE_USE)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        content = await request.aread()
        for attempt in range(len(self.urls)):
            index = self.current
            last = attempt == len(self.urls) - 1
            sent = httpx.Request(request.method, self.urls[index] + target, headers=headers, content=content,
                                 extensions=request.extensions)
            try:
                response = await self._inner.handle_async_request(sent)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self._next(index, exc)
                if last:
                    raise
                continue
            except httpx.TransportError as exc:
                self._next(index, exc)
                if last or not resend:
                    raise
                continue
            if response.status_code in _GATEWAY_FAILURES and not last:
                await response.aclose()
                self._next(index, f"HTTP {response.status_code}")
                continue
            return response
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def aclose(self) -> None:
        await self._inner.aclose()


def failover_client(urls: Sequence[str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=_PLACEHOLDER, transport=FailoverTransport(urls), timeout=TIMEOUT)
