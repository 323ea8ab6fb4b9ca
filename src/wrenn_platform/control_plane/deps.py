"""FastAPI dependencies for the shared per-app objects (set up in `app.py`'s lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from .settings import Settings


async def get_settings(request: Request) -> Settings:  # async: no thread hop per request
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session
