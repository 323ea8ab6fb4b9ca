"""Who is calling: resolve a request to a `Principal` from the session cookie or the API key.

Cookie-authenticated requests that change state must carry `X-CSRF-Token` equal to the
`wrenn_csrf` cookie (double submit); API-key requests are exempt. Route dependencies:
`require_session`, `require_key_or_session`, `require_admin`. With Redis configured, the session
lookup goes through `session_cache.py`; revocations invalidate it (`sessions.py`). API-key
lookups go through the in-process `key_cache.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit.actor import bind as bind_actor
from ..db.commit_watch import TOUCH_OPTION
from ..db.models import ApiKey, AuthSession, Team, TeamLimit, TeamMember, User
from ..db.types import utcnow
from ..deps import get_db, get_settings
from ..errors import ApiError, forbidden, unauthorized
from ..security import equal, sha256_hex
from ..settings import Settings
from .key_cache import KeyCache, KeySnapshot
from .key_rate import KeyRateLimiter
from .session_cache import SessionCache, SessionSnapshot

SESSION_COOKIE = "wrenn_sid"
CSRF_COOKIE = "wrenn_csrf"
CSRF_HEADER = "X-CSRF-Token"
API_KEY_HEADER = "X-API-Key"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Writing last_seen/last_used on every request would serialise all requests on one row.
_TOUCH_INTERVAL = timedelta(seconds=30)


@dataclass(frozen=True)
class Principal:
    kind: Literal["session", "api_key"]
    team_id: str
    user_id: str | None  # the session's user; for an API key, the user who created it
    role: str | None  # the caller's role in team_id (None for API keys: they act as the team)
    is_admin: bool
    actor_name: str
    session_id: str | None = None
    api_key_id: str | None = None

    @property
    def actor_type(self) -> str:
        return "user" if self.kind == "session" else "api_key"

    @property
    def actor_id(self) -> str:
        return (self.session_id and self.user_id) or self.api_key_id or ""


async def _load_session(request: Request, db: AsyncSession, sid_hash: str) -> SessionSnapshot | None:
    cache: SessionCache | None = getattr(request.app.state, "session_cache", None)
    generation = 0
    if cache is not None:
        cached, generation = await cache.get(sid_hash)
        if cached is not None:
            return cached
    row = (
        await db.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.sid_hash == sid_hash)
        )
    ).first()
    if row is None:
        return None
    auth_session, user = row
    snapshot = SessionSnapshot(
        session_id=auth_session.id,
        user_id=user.id,
        team_id=auth_session.team_id,
        created_at=auth_session.created_at,
        last_seen_at=auth_session.last_seen_at,
        expires_at=auth_session.expires_at,
        revoked=auth_session.revoked_at is not None,
        user_active=user.is_active,
        user_deleted=user.deleted_at is not None,
        is_admin=user.is_admin,
        actor_name=user.name or user.email,
    )
    if cache is not None and not snapshot.revoked:
        await cache.put(sid_hash, snapshot, generation)
    return snapshot


async def _session_principal(request: Request, db: AsyncSession, settings: Settings) -> Principal | None:
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    sid_hash = sha256_hex(sid)
    session = await _load_session(request, db, sid_hash)
    if session is None:
        return None
    now = utcnow()
    idle_deadline = session.last_seen_at + timedelta(seconds=settings.session_idle_seconds)
    if (
        session.revoked
        or session.expires_at <= now
        or idle_deadline <= now
        or not session.user_active
        or session.user_deleted
    ):
        return None
    if request.method not in SAFE_METHODS:
        header = request.headers.get(CSRF_HEADER, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not header or not cookie or not equal(header, cookie):
            raise ApiError(403, "csrf_failed", "missing or invalid X-CSRF-Token header")
    if now - session.last_seen_at >= _TOUCH_INTERVAL:
        await db.execute(
            update(AuthSession)
            .where(AuthSession.id == session.session_id, AuthSession.revoked_at.is_(None))
            .values(last_seen_at=now)
            .execution_options(**{TOUCH_OPTION: True})
        )
        await db.commit()
        cache: SessionCache | None = getattr(request.app.state, "session_cache", None)
        if cache is not None:
            await cache.drop(sid_hash)
    role = (
        await db.execute(
            select(TeamMember.role).where(
                TeamMember.team_id == session.team_id, TeamMember.user_id == session.user_id
            )
        )
    ).scalar_one_or_none()
    return Principal(
        kind="session",
        team_id=session.team_id,
        user_id=session.user_id,
        role=role,
        is_admin=session.is_admin,
        actor_name=session.actor_name,
        session_id=session.session_id,
    )


async def _load_api_key(request: Request, db: AsyncSession, key_hash: str) -> KeySnapshot | None:
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is not None and (cached := cache.get(key_hash)) is not None:
        return cached
    generation = cache.generation if cache is not None else 0
    row = (
        await db.execute(
            select(ApiKey.id, ApiKey.team_id, ApiKey.created_by, ApiKey.name, ApiKey.last_used,
                   TeamLimit.api_key_requests_per_second)
            .join(Team, Team.id == ApiKey.team_id)
            .outerjoin(TeamLimit, TeamLimit.team_id == ApiKey.team_id)
            .where(ApiKey.key_hash == key_hash, Team.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    snapshot = KeySnapshot(api_key_id=row.id, team_id=row.team_id, created_by=row.created_by, name=row.name,
                           last_used=row.last_used, requests_per_second=row.api_key_requests_per_second)
    if cache is not None:
        cache.put(key_hash, snapshot, generation)
    return snapshot


async def _within_request_rate(request: Request, api_key: KeySnapshot) -> None:
    """429 (with Retry-After) past the key's requests per second (a team limit, `team_limits.py`)."""
    limiter: KeyRateLimiter | None = getattr(request.app.state, "key_rate", None)
    if limiter is None:
        return
    settings: Settings = request.app.state.settings
    limit = api_key.requests_per_second
    if limit is None:
        limit = settings.api_key_requests_per_second
    if limit:
        await limiter.check(api_key.api_key_id, limit)


async def _api_key_principal(request: Request, db: AsyncSession) -> Principal | None:
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        return None
    key_hash = sha256_hex(key)
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    generation = cache.generation if cache is not None else 0
    api_key = await _load_api_key(request, db, key_hash)
    if api_key is None:
        raise unauthorized("invalid API key")
    await _within_request_rate(request, api_key)
    now = utcnow()
    if api_key.last_used is None or now - api_key.last_used >= _TOUCH_INTERVAL:
        await db.execute(
            update(ApiKey).where(ApiKey.id == api_key.api_key_id).values(last_used=now)
            .execution_options(**{TOUCH_OPTION: True})
        )
        await db.commit()
        if cache is not None:
            cache.put(key_hash, replace(api_key, last_used=now), generation)
    return Principal(
        kind="api_key",
        team_id=api_key.team_id,
        user_id=api_key.created_by,
        role=None,
        is_admin=False,
        actor_name=api_key.name,
        api_key_id=api_key.api_key_id,
    )


async def require_session(
    request: Request, db: AsyncSession = Depends(get_db), settings: Settings = Depends(get_settings)
) -> Principal:
    principal = await _session_principal(request, db, settings)
    if principal is None:
        raise unauthorized()
    bind_actor(principal)  # what this request writes (events, audit entries) names the caller
    return principal


async def require_key_or_session(
    request: Request, db: AsyncSession = Depends(get_db), settings: Settings = Depends(get_settings)
) -> Principal:
    principal = await _api_key_principal(request, db)
    if principal is None:
        principal = await _session_principal(request, db, settings)
    if principal is None:
        raise unauthorized()
    bind_actor(principal)  # what this request writes (events, audit entries) names the caller
    return principal


async def require_admin(principal: Principal = Depends(require_session)) -> Principal:
    if not principal.is_admin:
        raise forbidden("platform admin required")
    return principal
