"""Fixtures of the identity tests (on top of tests/control_plane/conftest.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .helpers import Account, register

Register = Callable[..., Awaitable[Account]]


@pytest.fixture
async def account_factory(app: FastAPI, settings: Settings) -> AsyncIterator[Register]:
    """Accounts created through signup → outbox → activate; their clients closed afterwards."""
    created: list[Account] = []

    async def factory(address: str | None = None, name: str = "Ada") -> Account:
        account = await register(app, settings, address, name)
        created.append(account)
        return account

    yield factory
    for account in created:
        await account.client.aclose()


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as client:
        yield client


REDIS_URL = os.environ.get("WRENN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_settings(settings: Settings) -> AsyncIterator[Settings]:
    """Settings using the real Redis, under a key/channel prefix of this test only (deleted after)."""
    prefix = f"wrenn-test-{secrets.token_hex(6)}:"
    yield settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": prefix})
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app (one "replica") with its services started."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
