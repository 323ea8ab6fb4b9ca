"""Single-use tokens (activation, password reset, OAuth state): SHA-256 at rest, consumed atomically."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import OneTimeToken
from ..db.types import utcnow
from ..security import new_token, sha256_hex

ACTIVATION = "activation"
PASSWORD_RESET = "password_reset"
OAUTH_STATE = "oauth_state"


async def issue(
    db: AsyncSession, purpose: str, ttl_seconds: int, user_id: str | None = None, data: dict[str, Any] | None = None
) -> str:
    """Store a new token (not committed) and return its plaintext, which is never stored."""
    raw = new_token()
    now = utcnow()
    db.add(
        OneTimeToken(
            purpose=purpose,
            token_hash=sha256_hex(raw),
            user_id=user_id,
            data=json.dumps(data or {}),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    return raw


async def consume(db: AsyncSession, purpose: str, raw: str) -> OneTimeToken | None:
    """Mark the token used and return it, or None if unknown, expired or already used.

    The conditional UPDATE makes two concurrent uses of one token succeed at most once.
    """
    now = utcnow()
    token_hash = sha256_hex(raw)
    result = await db.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.token_hash == token_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return (await db.execute(select(OneTimeToken).where(OneTimeToken.token_hash == token_hash))).scalar_one()


async def last_issued_at(db: AsyncSession, purpose: str, user_id: str) -> datetime | None:
    return (
        await db.execute(
            select(func.max(OneTimeToken.created_at)).where(
                OneTimeToken.purpose == purpose, OneTimeToken.user_id == user_id
            )
        )
    ).scalar_one_or_none()


async def retire(db: AsyncSession, purpose: str, user_id: str) -> None:
    """Make every outstanding token of this purpose for the user unusable (not committed)."""
    await db.execute(
        update(OneTimeToken)
        .where(OneTimeToken.purpose == purpose, OneTimeToken.user_id == user_id, OneTimeToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def data_of(token: OneTimeToken) -> dict[str, Any]:
    value = json.loads(token.data or "{}")
    return value if isinstance(value, dict) else {}
