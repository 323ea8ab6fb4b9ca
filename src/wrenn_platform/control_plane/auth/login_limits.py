"""Failed-login limits per email and per client IP (429 with Retry-After once exceeded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from ..ratelimit import RateLimiter

WINDOW_SECONDS = 60


class LoginLimits:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    @staticmethod
    def _keys(email: str, ip: str) -> list[str]:
        return [f"login:email:{email}", f"login:ip:{ip}"]

    async def check(self, email: str, ip: str) -> None:
        waits = [await self._limiter.retry_after(key) for key in self._keys(email, ip)]
        blocked = [wait for wait in waits if wait is not None]
        if blocked:
            # HTTPException carries headers; the app's handler renders it as the `rate_limited` error body.
            raise HTTPException(
                429, "too many failed login attempts; try again later", headers={"Retry-After": str(max(blocked))}
            )

    async def failed(self, email: str, ip: str) -> None:
        for key in self._keys(email, ip):
            await self._limiter.hit(key)

    async def succeeded(self, email: str) -> None:
        await self._limiter.reset(f"login:email:{email}")


@asynccontextmanager
async def login_limits_service(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    app.state.login_limits = LoginLimits(
        RateLimiter(settings.login_attempts_per_minute, WINDOW_SECONDS, app.state.redis, settings.redis_prefix)
    )
    yield
