"""/v1/me: profile, rename, delete (and its 409 rule), password change and add."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.auth.purge import purge_deleted_accounts, purge_expired
from wrenn_platform.control_plane.db.models import (
    AuthSession,
    Capsule,
    OAuthIdentity,
    OneTimeToken,
    Team,
    TeamMember,
    User,
)
from wrenn_platform.control_plane.db.types import utcnow

from .conftest import Register
from .helpers import PASSWORD, signup, use_csrf


async def test_get_and_rename(account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory(name="Old Name")
    assert (await anon.get("/v1/me")).status_code == 401
    renamed = await account.client.patch("/v1/me", json={"name": "  New Name  "})
    assert renamed.status_code == 204
    me = (await account.client.get("/v1/me")).json()
    assert me == {"name": "New Name", "email": account.email, "has_password": True, "providers": []}


async def test_delete_account(app: FastAPI, account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory()
    mismatch = await account.client.request("DELETE", "/v1/me", json={"confirmation": "someone@else.com"})
    assert mismatch.status_code == 400
    assert "confirmation" in mismatch.json()["error"]["message"]
    deleted = await account.client.request("DELETE", "/v1/me", json={"confirmation": account.email.upper()})
    assert deleted.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401
    login = await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 401
    assert (await signup(anon, account.email)).status_code == 409  # the address stays taken while deleted
    async with app.state.sessionmaker() as db:
        user = await db.get(User, account.user_id)
        assert user is not None and user.deleted_at is not None
        team = await db.get(Team, account.team_id)
        assert team is not None and team.deleted_at is not None  # the personal team went with it
        sessions = (await db.execute(select(AuthSession).where(AuthSession.user_id == user.id))).scalars()
        assert all(s.revoked_at is not None for s in sessions)


async def test_delete_account_destroys_the_capsules_of_its_teams(app: FastAPI, account_factory: Register) -> None:
    account = await account_factory()
    async with app.state.sessionmaker() as db:
        capsule = Capsule(team_id=account.team_id, status="running")
        db.add(capsule)
        await db.commit()
    deleted = await account.client.request("DELETE", "/v1/me", json={"confirmation": account.email})
    assert deleted.status_code == 204
    async with app.state.sessionmaker() as db:
        refreshed = await db.get(Capsule, capsule.id)
        assert refreshed is not None and refreshed.status == "stopping"


async def test_delete_blocked_while_owning_team_with_members(app: FastAPI, account_factory: Register) -> None:
    owner = await account_factory()
    member = await account_factory()
    async with app.state.sessionmaker() as db:
        db.add(TeamMember(team_id=owner.team_id, user_id=member.user_id, role="member"))
        await db.commit()
    blocked = await owner.client.request("DELETE", "/v1/me", json={"confirmation": owner.email})
    assert blocked.status_code == 409
    assert blocked.json()["error"]["code"] == "owns_shared_team"
    assert (await owner.client.get("/v1/me")).status_code == 200
    # Being a plain member of someone else's team does not block deletion.
    left = await member.client.request("DELETE", "/v1/me", json={"confirmation": member.email})
    assert left.status_code == 204
    async with app.state.sessionmaker() as db:
        rows = (await db.execute(select(TeamMember).where(TeamMember.team_id == owner.team_id))).scalars()
        assert [m.user_id for m in rows] == [owner.user_id]
    assert (await owner.client.request("DELETE", "/v1/me", json={"confirmation": owner.email})).status_code == 204


async def test_change_password_revokes_all_sessions(
    app: FastAPI, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    assert (await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})).status_code == 200
    missing = await account.client.post("/v1/me/password", json={"new_password": "brand-new-pass"})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("current_password")
    wrong = await account.client.post(
        "/v1/me/password", json={"current_password": "not it", "new_password": "brand-new-pass"}
    )
    assert wrong.status_code == 401
    short = await account.client.post("/v1/me/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400
    assert short.json()["error"]["message"].startswith("new_password")
    mismatch = await account.client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "brand-new-pass", "confirm_password": "other-pass"},
    )
    assert mismatch.status_code == 400
    changed = await account.client.post(
        "/v1/me/password", json={"current_password": PASSWORD, "new_password": "brand-new-pass"}
    )
    assert changed.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401
    assert (await anon.get("/v1/me")).status_code == 401
    old = await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await anon.post("/v1/auth/login", json={"email": account.email, "password": "brand-new-pass"})
    assert new.status_code == 200


async def test_add_password_to_oauth_only_account(app: FastAPI, account_factory: Register) -> None:
    account = await account_factory()
    async with app.state.sessionmaker() as db:
        user = await db.get(User, account.user_id)
        assert user is not None
        user.password_hash = None
        db.add(OAuthIdentity(user_id=user.id, provider="github", provider_user_id="42", email=account.email))
        await db.commit()
    me = (await account.client.get("/v1/me")).json()
    assert me["has_password"] is False and me["providers"] == ["github"]
    unconfirmed = await account.client.post("/v1/me/password", json={"new_password": "added-password"})
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"]["message"].startswith("confirm_password")
    mismatch = await account.client.post(
        "/v1/me/password", json={"new_password": "added-password", "confirm_password": "added-passworX"}
    )
    assert mismatch.status_code == 400
    added = await account.client.post(
        "/v1/me/password", json={"new_password": "added-password", "confirm_password": "added-password"}
    )
    assert added.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401  # adding also signs out everywhere
    login = await account.client.post("/v1/auth/login", json={"email": account.email, "password": "added-password"})
    assert login.status_code == 200
    use_csrf(account.client)
    assert (await account.client.get("/v1/me")).json()["has_password"] is True


async def test_deleted_account_is_erased_after_fifteen_days(
    app: FastAPI, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    assert (await account.client.request("DELETE", "/v1/me", json={"confirmation": account.email})).status_code == 204
    assert await purge_deleted_accounts(app.state.sessionmaker) == 0  # not yet
    later = utcnow() + timedelta(days=15, minutes=1)
    assert await purge_deleted_accounts(app.state.sessionmaker, now=later) == 1
    async with app.state.sessionmaker() as db:
        user = await db.get(User, account.user_id)
        assert user is not None and user.email.endswith("@deleted.invalid") and user.password_hash is None
    assert (await signup(anon, account.email)).status_code == 201  # the address is free again
    assert await purge_deleted_accounts(app.state.sessionmaker, now=later) == 0


async def test_expired_tokens_and_old_sessions_are_deleted(
    app: FastAPI, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    assert (await anon.post("/v1/me/password/reset", json={"email": account.email})).status_code == 204
    assert await purge_expired(app.state.sessionmaker) == 0  # all still live
    async with app.state.sessionmaker() as db:
        assert len((await db.execute(select(OneTimeToken))).all()) == 2  # activation + reset
    assert await purge_expired(app.state.sessionmaker, now=utcnow() + timedelta(days=1, hours=1)) == 2
    assert await purge_expired(app.state.sessionmaker, now=utcnow() + timedelta(days=8, hours=1)) == 1
    async with app.state.sessionmaker() as db:
        assert (await db.execute(select(AuthSession))).first() is None
