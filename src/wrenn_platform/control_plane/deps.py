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
    session: AsyncSession = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            async with session:  # its exit closes it (connection back, rollback), run to completion if cancelled
                pass
        else:
            # Nothing begun, or all committed: no connection is held, and the async close (a task, a
            # shield and a greenlet per request) would only empty the identity map. The hot path (exec
            # with the key and capsule cached) never touches the database.
            session.expunge_all()
