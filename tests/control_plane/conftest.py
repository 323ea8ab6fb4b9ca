"""Fixtures for control-plane tests. Every test using `app` runs twice: SQLite and PostgreSQL.

PostgreSQL is the real server on this machine (`WRENN_TEST_POSTGRES_URL`, default
postgresql://postgres@127.0.0.1:5432/postgres); each test gets a fresh database, dropped after.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.auth.principal import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    Principal,
    require_key_or_session,
)
from wrenn_platform.control_plane.db.models import AuthSession, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import hash_password, new_token, sha256_hex
from wrenn_platform.control_plane.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("WRENN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_URL = "http://testserver"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'wrenn.db'}"
        return
    name = f"wrenn_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secure_cookies=False,
        embedded_agent=False,
        public_url="http://testserver",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def make_client(app: FastAPI, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c


@dataclass
class LoggedInUser:
    id: str
    email: str
    password: str
    team_id: str
    client: httpx.AsyncClient  # carries the session cookie, the CSRF cookie and the CSRF header


UserFactory = Callable[..., Awaitable[LoggedInUser]]


@pytest.fixture
async def make_user(app: FastAPI) -> AsyncIterator[UserFactory]:
    """Create an active user with its own team (owner) and a logged-in client, straight in the DB.

    This does not go through signup/login on purpose: tests of other routes should not depend
    on the identity routes. Tests of the identity routes go through the API.
    """
    clients: list[httpx.AsyncClient] = []

    async def factory(
        email: str | None = None, *, name: str = "Test User", admin: bool = False, password: str = "correct horse 1"
    ) -> LoggedInUser:
        email = email or f"user-{secrets.token_hex(4)}@example.com"
        sid, csrf = new_token(), new_token()
        async with app.state.sessionmaker() as db:
            team = Team(name=f"{name}'s Team")
            user = User(email=email.lower(), name=name, password_hash=hash_password(password),
                        is_active=True, is_admin=admin)
            db.add_all([team, user])
            await db.flush()
            user.default_team_id = team.id
            db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            now = utcnow()
            db.add(AuthSession(sid_hash=sha256_hex(sid), user_id=user.id, team_id=team.id,
                               expires_at=now + timedelta(hours=24)))
            await db.commit()
            user_id, team_id = user.id, team.id
        c = make_client(app, headers={CSRF_HEADER: csrf})
        c.cookies.set(SESSION_COOKIE, sid)
        c.cookies.set(CSRF_COOKIE, csrf)
        clients.append(c)
        return LoggedInUser(id=user_id, email=email.lower(), password=password, team_id=team_id, client=c)

    yield factory
    for c in clients:
        await c.aclose()


SessionFactory = Callable[[str, str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def session_for(app: FastAPI) -> AsyncIterator[SessionFactory]:
    """`await session_for(user_id, team_id)`: a new logged-in client of an existing user, its session
    scoped to `team_id` (as after switch-team), straight in the DB like `make_user`."""
    clients: list[httpx.AsyncClient] = []

    async def factory(user_id: str, team_id: str) -> httpx.AsyncClient:
        sid, csrf = new_token(), new_token()
        async with app.state.sessionmaker() as db:
            db.add(AuthSession(sid_hash=sha256_hex(sid), user_id=user_id, team_id=team_id,
                               expires_at=utcnow() + timedelta(hours=24)))
            await db.commit()
        c = make_client(app, headers={CSRF_HEADER: csrf})
        c.cookies.set(SESSION_COOKIE, sid)
        c.cookies.set(CSRF_COOKIE, csrf)
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


@pytest.fixture
async def key_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client for `X-API-Key` calls, and a tiny route `/_test/key-team` that accepts
    API keys (or a session) and answers whose team the caller acts for."""

    @app.get("/_test/key-team")
    async def key_team(principal: Principal = Depends(require_key_or_session)) -> dict[str, str]:
        return {"team_id": principal.team_id, "kind": principal.kind}

    async with make_client(app) as c:
        yield c
