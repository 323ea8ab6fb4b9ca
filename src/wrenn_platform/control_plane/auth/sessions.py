"""Starting, rotating and revoking browser sessions; every revocation invalidates the cache at once.

Other route groups may use `revoke_user_sessions` and `invalidate_user` to have the change hold on
the user's very next request on every replica; writes that skip them still invalidate the cache
(see `session_cache.py`). Each invalidation is also published on the bus (`INVALIDATED_TOPIC`).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI, Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from ..bus import Bus
from ..db.models import AuthSession
from ..db.types import utcnow
from ..security import new_token, sha256_hex
from ..settings import Settings
from .cookies import set_session_cookies
from .session_cache import INVALIDATED_TOPIC, SessionCache


def client_ip(request: Request, settings: Settings) -> str:
    if settings.trust_proxy_headers:
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return (request.client.host if request.client else "")[:64]


async def start_session(
    db: AsyncSession, request: Request, response: Response, settings: Settings, user_id: str, team_id: str
) -> AuthSession:
    """Create a session for the user in the team, commit, and set both cookies on the response."""
    sid, csrf = new_token(), new_token()
    now = utcnow()
    auth_session = AuthSession(
        sid_hash=sha256_hex(sid),
        user_id=user_id,
        team_id=team_id,
        user_agent=request.headers.get("user-agent", "")[:512],
        ip_address=client_ip(request, settings),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_absolute_seconds),
    )
    db.add(auth_session)
    await db.commit()
    set_session_cookies(response, settings, sid, csrf)
    return auth_session


async def rotate_session(
    app: FastAPI, db: AsyncSession, response: Response, settings: Settings, session_id: str, team_id: str
) -> None:
    """Give the session a new sid (and CSRF token) scoped to `team_id`; the old sid stops working.

    The absolute deadline is kept: rotating must not extend a session's life.
    """
    auth_session = await db.get(AuthSession, session_id)
    if auth_session is None:
        raise LookupError(session_id)
    sid, csrf = new_token(), new_token()
    auth_session.sid_hash = sha256_hex(sid)
    auth_session.team_id = team_id
    auth_session.last_seen_at = utcnow()
    await db.commit()
    await _invalidate(app, auth_session.user_id, 1)
    set_session_cookies(response, settings, sid, csrf)


async def revoke_user_sessions(
    app: FastAPI, db: AsyncSession, user_id: str, session_ids: list[str] | None = None
) -> int:
    """Revoke the user's live sessions (all, or those in `session_ids`); returns how many."""
    now = utcnow()
    query = select(AuthSession.id).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
    )
    if session_ids is not None:
        query = query.where(AuthSession.id.in_(session_ids))
    rows = (await db.execute(query)).all()
    if rows:
        await db.execute(
            update(AuthSession).where(AuthSession.id.in_([r.id for r in rows])).values(revoked_at=now)
        )
        await db.commit()
    await _invalidate(app, user_id, len(rows))
    return len(rows)


async def invalidate_user(app: FastAPI, user_id: str) -> None:
    """Make cached lookups of the user's sessions stale after a committed change to the user."""
    await _invalidate(app, user_id, 0)


async def _invalidate(app: FastAPI, user_id: str, revoked: int) -> None:
    cache: SessionCache | None = getattr(app.state, "session_cache", None)
    if cache is not None:
        await cache.invalidate()
    bus: Bus | None = getattr(app.state, "bus", None)
    if bus is not None:
        await bus.publish(INVALIDATED_TOPIC, {"user_id": user_id, "revoked": revoked})
