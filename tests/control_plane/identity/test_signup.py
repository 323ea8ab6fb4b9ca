"""Signup → activation email in the outbox → activate → cookies → /v1/me."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from wrenn_platform.control_plane.db.models import OneTimeToken, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.settings import Settings

from .helpers import PASSWORD, messages_to, new_email, signup, token_in, use_csrf


async def test_signup_activate_flow(app: FastAPI, settings: Settings, anon: httpx.AsyncClient) -> None:
    address = new_email()
    response = await signup(anon, address.upper(), name="Ada Lovelace")
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"message"}
    assert "wrenn_sid" not in response.cookies

    async with app.state.sessionmaker() as db:
        user = (await db.execute(select(User).where(User.email == address))).scalar_one()
        assert user.is_active is False  # stored lower-cased, inactive until activation
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        membership = (await db.execute(select(TeamMember).where(TeamMember.user_id == user.id))).scalar_one()
        assert membership.role == "owner" and membership.team_id == user.default_team_id
        stored = (await db.execute(select(OneTimeToken).where(OneTimeToken.user_id == user.id))).scalar_one()

    (message,) = messages_to(settings, address)
    token = token_in(message)
    assert f"{settings.public_url}/activate?token=" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert stored.token_hash != token and token not in stored.data  # only the hash is at rest

    login_before = await anon.post("/v1/auth/login", json={"email": address, "password": PASSWORD})
    assert login_before.status_code == 401

    activated = await anon.post("/v1/auth/activate", json={"token": token})
    assert activated.status_code == 200, activated.text
    body = activated.json()
    assert body == {"user_id": user.id, "team_id": user.default_team_id, "email": address,
                    "name": "Ada Lovelace", "role": "owner", "is_admin": False}
    set_cookies = activated.headers.get_list("set-cookie")
    sid_cookie = next(c for c in set_cookies if c.startswith("wrenn_sid="))
    csrf_cookie = next(c for c in set_cookies if c.startswith("wrenn_csrf="))
    assert "HttpOnly" in sid_cookie and "SameSite=strict" in sid_cookie and "Path=/" in sid_cookie
    assert "HttpOnly" not in csrf_cookie and "SameSite=strict" in csrf_cookie

    me = await anon.get("/v1/me")
    assert me.status_code == 200
    assert me.json() == {"name": "Ada Lovelace", "email": address, "has_password": True, "providers": []}

    reused = await anon.post("/v1/auth/activate", json={"token": token})
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "invalid_token"

    use_csrf(anon)
    async with app.state.sessionmaker() as db:
        team = await db.get(Team, body["team_id"])
        assert team is not None and team.deleted_at is None


async def test_signup_conflicts(app: FastAPI, settings: Settings, anon: httpx.AsyncClient) -> None:
    address = new_email()
    assert (await signup(anon, address)).status_code == 201
    again = await signup(anon, address)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "signup_cooldown"
    assert len(messages_to(settings, address)) == 1

    # After the cooldown a new signup sends a new link and the old one stops working.
    async with app.state.sessionmaker() as db:
        await db.execute(update(OneTimeToken).values(created_at=utcnow() - timedelta(minutes=5)))
        await db.commit()
    assert (await signup(anon, address, password="another-password", name="Grace")).status_code == 201
    first, second = messages_to(settings, address)
    stale = await anon.post("/v1/auth/activate", json={"token": token_in(first)})
    assert stale.status_code == 400
    fresh = await anon.post("/v1/auth/activate", json={"token": token_in(second)})
    assert fresh.status_code == 200 and fresh.json()["name"] == "Grace"

    taken = await signup(anon, address.upper())
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "email_taken"


async def test_expired_and_unknown_activation_tokens(app: FastAPI, settings: Settings, anon: httpx.AsyncClient) -> None:
    address = new_email()
    assert (await signup(anon, address)).status_code == 201
    token = token_in(messages_to(settings, address)[0])
    async with app.state.sessionmaker() as db:
        await db.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    expired = await anon.post("/v1/auth/activate", json={"token": token})
    assert expired.status_code == 400
    assert expired.json()["error"] == {"code": "invalid_token", "message": "invalid or expired activation token"}
    unknown = await anon.post("/v1/auth/activate", json={"token": "nope"})
    assert unknown.status_code == 400
    async with app.state.sessionmaker() as db:
        user = (await db.execute(select(User).where(User.email == address))).scalar_one()
        assert user.is_active is False


async def test_activation_token_lifetime_is_thirty_minutes(
    app: FastAPI, settings: Settings, anon: httpx.AsyncClient
) -> None:
    address = new_email()
    assert (await signup(anon, address)).status_code == 201
    async with app.state.sessionmaker() as db:
        token = (await db.execute(select(OneTimeToken))).scalar_one()
    assert token.purpose == "activation"
    assert abs((token.expires_at - token.created_at) - timedelta(minutes=30)) < timedelta(seconds=1)


async def test_deactivated_account_cannot_reactivate_itself(
    app: FastAPI, settings: Settings, anon: httpx.AsyncClient
) -> None:
    address = new_email()
    assert (await signup(anon, address)).status_code == 201
    first = token_in(messages_to(settings, address)[0])
    async with app.state.sessionmaker() as db:
        await db.execute(update(OneTimeToken).values(created_at=utcnow() - timedelta(minutes=5)))
        await db.commit()
    assert (await signup(anon, address)).status_code == 201  # a second link, first one retired
    second = token_in(messages_to(settings, address)[1])
    assert (await anon.post("/v1/auth/activate", json={"token": second})).status_code == 200
    async with app.state.sessionmaker() as db:
        user = (await db.execute(select(User).where(User.email == address))).scalar_one()
        assert user.activated_at is not None
        user.is_active = False  # an admin deactivates the account...
        # ...and both links are made live again, so that only the deactivation can refuse them.
        await db.execute(update(OneTimeToken).where(OneTimeToken.user_id == user.id).values(used_at=None))
        await db.commit()
    assert (await signup(anon, address)).status_code == 409  # not a fresh signup: email_taken
    for token in (first, second):
        replay = await anon.post("/v1/auth/activate", json={"token": token})
        assert replay.status_code == 400
    async with app.state.sessionmaker() as db:
        assert (await db.execute(select(User.is_active).where(User.email == address))).scalar_one() is False
