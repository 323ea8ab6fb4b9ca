"""Requests per second per API key (a team limit): 429 with Retry-After past it.

One-second fixed windows, counted in Redis when configured (so the limit holds across replicas)
and in this process otherwise. The limit itself comes with the key's cached lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from ..ratelimit import RateLimiter


class KeyRateLimiter:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def check(self, api_key_id: str, per_second: int) -> None:
        if await self._limiter.hit(f"apikey:{api_key_id}") > per_second:
            # HTTPException carries headers; the app's handler renders it as the `rate_limited` error body.
            raise HTTPException(
                429, f"team limit api_key_requests_per_second is {per_second}: this key is over it; retry shortly",
                headers={"Retry-After": "1"})


@asynccontextmanager
async def key_rate_service(app: FastAPI) -> AsyncIterator[None]:
    """app.state.key_rate, over the bus service's Redis (when configured)."""
    settings = app.state.settings
    app.state.key_rate = KeyRateLimiter(RateLimiter(0, 1, app.state.redis, settings.redis_prefix))
    yield
