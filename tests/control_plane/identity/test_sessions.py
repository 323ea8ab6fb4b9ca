"""Listing and revoking sessions, idle and absolute expiry, switch-team rotating the sid."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from wrenn_platform.control_plane.db.models import AuthSession, Team, TeamMember
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .conftest import Register
from .helpers import PASSWORD, use_csrf


async def test_list_and_revoke_own_sessions(account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory()
    other = await account_factory()
    login = await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD},
                            headers={"User-Agent": "second-device"})
    assert login.status_code == 200
    use_csrf(anon)

    listed = await account.client.get("/v1/me/sessions")
    assert listed.status_code == 200
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2
    assert set(sessions[0]) == {"id", "user_agent", "ip_address", "created_at", "last_seen_at", "expires_at", "current"}
    assert [s["current"] for s in sessions].count(True) == 1
    second = next(s for s in sessions if s["user_agent"] == "second-device")
    assert second["current"] is False and second["ip_address"] == "127.0.0.1"

    # Someone else's session, and a session that does not exist, answer alike.
    others = (await other.client.get("/v1/me/sessions")).json()["sessions"]
    for foreign in (others[0]["id"], "ses-000000000000"):
        denied = await account.client.delete(f"/v1/me/sessions/{foreign}")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "forbidden"
    assert (await other.client.get("/v1/me")).status_code == 200

    assert (await account.client.delete(f"/v1/me/sessions/{second['id']}")).status_code == 204
    assert (await anon.get("/v1/me")).status_code == 401
    remaining = (await account.client.get("/v1/me/sessions")).json()["sessions"]
    assert [s["id"] for s in remaining] == [s["id"] for s in sessions if s["current"]]

    # Revoking the current session signs this client out.
    revoked_self = await account.client.delete(f"/v1/me/sessions/{remaining[0]['id']}")
    assert revoked_self.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401


async def test_idle_timeout(app: FastAPI, settings: Settings, account_factory: Register) -> None:
    account = await account_factory()
    idle = timedelta(seconds=settings.session_idle_seconds)
    async with app.state.sessionmaker() as db:
        await db.execute(update(AuthSession).values(last_seen_at=utcnow() - idle + timedelta(minutes=1)))
        await db.commit()
    assert (await account.client.get("/v1/me")).status_code == 200  # and this refreshes last_seen_at
    async with app.state.sessionmaker() as db:
        session = (await db.execute(select(AuthSession))).scalar_one()
        assert utcnow() - session.last_seen_at < timedelta(minutes=1)
        await db.execute(update(AuthSession).values(last_seen_at=utcnow() - idle - timedelta(seconds=1)))
        await db.commit()
    assert (await account.client.get("/v1/me")).status_code == 401


async def test_absolute_lifetime(app: FastAPI, settings: Settings, account_factory: Register) -> None:
    account = await account_factory()
    async with app.state.sessionmaker() as db:
        session = (await db.execute(select(AuthSession))).scalar_one()
        lifetime = session.expires_at - session.created_at
        assert abs(lifetime - timedelta(seconds=settings.session_absolute_seconds)) < timedelta(seconds=1)
        assert settings.session_absolute_seconds == 24 * 3600 and settings.session_idle_seconds == 6 * 3600
        # Active all along (recently seen), but created more than 24 h ago.
        await db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow()))
        await db.commit()
    assert (await account.client.get("/v1/me")).status_code == 401
    assert (await account.client.get("/v1/me/sessions")).status_code == 401


async def test_switch_team_rotates_sid(app: FastAPI, account_factory: Register) -> None:
    account = await account_factory()
    stranger = await account_factory()
    async with app.state.sessionmaker() as db:
        shared = Team(name="Shared")
        db.add(shared)
        await db.flush()
        db.add(TeamMember(team_id=shared.id, user_id=account.user_id, role="member"))
        await db.commit()
        shared_id = shared.id

    client = account.client
    old_sid, old_csrf = client.cookies["wrenn_sid"], client.cookies["wrenn_csrf"]
    response = await client.post("/v1/auth/switch-team", json={"team_id": shared_id})
    assert response.status_code == 200, response.text
    assert response.json()["team_id"] == shared_id and response.json()["role"] == "member"
    new_sid = client.cookies["wrenn_sid"]
    assert new_sid != old_sid and client.cookies["wrenn_csrf"] != old_csrf
    async with app.state.sessionmaker() as db:
        sessions = (await db.execute(select(AuthSession).where(AuthSession.user_id == account.user_id))).scalars()
        (session,) = list(sessions)
        assert session.team_id == shared_id

    # The old sid no longer works; the new one does (with the new CSRF token).
    async with make_client(app) as stale:
        stale.cookies.set("wrenn_sid", old_sid)
        assert (await stale.get("/v1/me")).status_code == 401
    use_csrf(client)
    assert (await client.get("/v1/me")).status_code == 200

    not_member = await client.post("/v1/auth/switch-team", json={"team_id": stranger.team_id})
    assert not_member.status_code == 403
    missing = await client.post("/v1/auth/switch-team", json={"team_id": "team-000000000000"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    back = await client.post("/v1/auth/switch-team", json={"team_id": account.team_id})
    assert back.status_code == 200 and back.json()["role"] == "owner"
