"""Housekeeping of identity data, hourly.

Deleted accounts are removed for good after 15 days (the contract's promise): the user row stays,
because other records may name it (audit, API keys' creator), but what makes it a person goes:
email, name, password, linked providers, sessions and tokens, and the address becomes free for a
new signup. Expired single-use tokens and long-ended sessions are deleted, so that nothing an
anonymous caller can create (an OAuth state, a reset request) accumulates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.models import AuthSession, OAuthIdentity, OneTimeToken, User
from ..db.types import utcnow
from ..events.wakeup import stop

log = logging.getLogger(__name__)
RETENTION = timedelta(days=15)
TOKEN_GRACE = timedelta(days=1)
SESSION_GRACE = timedelta(days=7)
PURGE_INTERVAL_SECONDS = 3600
ERASED_DOMAIN = "@deleted.invalid"


async def purge_deleted_accounts(sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None) -> int:
    """Erase accounts deleted more than 15 days ago; returns how many."""
    cutoff = (now or utcnow()) - RETENTION
    async with sessionmaker() as db:
        users = (
            await db.execute(
                select(User).where(User.deleted_at.is_not(None), User.deleted_at < cutoff,
                                   User.email.not_like(f"%{ERASED_DOMAIN}"))
            )
        ).scalars().all()
        for user in users:
            user.email = f"{user.id}{ERASED_DOMAIN}"
            user.name = ""
            user.password_hash = None
            for model in (OAuthIdentity, AuthSession, OneTimeToken):
                await db.execute(delete(model).where(model.user_id == user.id))
        await db.commit()
        return len(users)


async def purge_expired(sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None) -> int:
    """Delete tokens expired a day ago and sessions ended a week ago; returns how many rows."""
    now = now or utcnow()
    async with sessionmaker() as db:
        tokens = await db.execute(delete(OneTimeToken).where(OneTimeToken.expires_at < now - TOKEN_GRACE))
        sessions = await db.execute(delete(AuthSession).where(AuthSession.expires_at < now - SESSION_GRACE))
        await db.commit()
    return int(tokens.rowcount or 0) + int(sessions.rowcount or 0)  # type: ignore[attr-defined]


@asynccontextmanager
async def purge_service(app: FastAPI) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            try:
                erased = await purge_deleted_accounts(app.state.sessionmaker)
                if erased:
                    log.info("erased %d accounts deleted more than %s ago", erased, RETENTION)
                await purge_expired(app.state.sessionmaker)
            except Exception:
                log.exception("purging deleted accounts failed")
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="identity-purge")
    try:
        yield
    finally:
        await stop([task])
