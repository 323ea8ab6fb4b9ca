"""The capsule API's server (`../capsules/conftest.py`: real app, embedded agent, namespace runtime,
SQLite and PostgreSQL) for this package, plus a platform admin with a browser session."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import AuthSession, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import new_token, sha256_hex

from ..capsules.conftest import Env, Tenant, api, env, other  # noqa: F401  (env is package-scoped: its own server here)

pytestmark = pytest.mark.root


async def _make_admin(database_url: str) -> Tenant:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            team = Team(name="Platform admins")
            user = User(email=f"admin-{secrets.token_hex(4)}@example.com", name="Admin", is_active=True,
                        is_admin=True)
            db.add_all([team, user])
            await db.flush()
            user.default_team_id = team.id
            db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            sid, csrf = new_token(), new_token()
            db.add(AuthSession(sid_hash=sha256_hex(sid), user_id=user.id, team_id=team.id,
                               expires_at=utcnow() + timedelta(hours=24)))
            await db.commit()
            return Tenant(team_id=team.id, api_key="", session_id=sid, csrf=csrf)
    finally:
        await engine.dispose()


@pytest.fixture(scope="package")
def admin_tenant(env: Env) -> Tenant:  # noqa: F811
    return asyncio.run(_make_admin(env.database_url))


@pytest.fixture
async def admin(env: Env, admin_tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """A platform admin's session client (cookie + CSRF)."""
    async with env.session_client(admin_tenant) as c:
        yield c


@pytest.fixture
async def non_admin(env: Env) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """Team A's owner over a session: not a platform admin."""
    async with env.session_client(env.a) as c:
        yield c
