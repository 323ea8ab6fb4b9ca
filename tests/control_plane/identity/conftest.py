"""Fixtures of the identity tests (on top of tests/control_plane/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

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
