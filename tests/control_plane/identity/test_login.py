"""Login, its rate limit, logout and logout-all."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from wrenn_platform.control_plane.db.models import AuthSession, User
from wrenn_platform.control_plane.settings import Settings

from ..conftest import BASE_URL
from .conftest import Register
from .helpers import PASSWORD, signup, use_csrf


async def test_login_sets_session_in_default_team(account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory(name="Linus")
    response = await anon.post("/v1/auth/login", json={"email": account.email.upper(), "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": account.user_id, "team_id": account.team_id, "email": account.email,
                               "name": "Linus", "role": "owner", "is_admin": False}
    assert anon.cookies.get("wrenn_sid") and anon.cookies.get("wrenn_csrf")
    assert anon.cookies["wrenn_sid"] != account.client.cookies["wrenn_sid"]
    assert (await anon.get("/v1/me")).status_code == 200


async def test_login_failures_do_not_say_why(
    app: FastAPI, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    wrong = await anon.post("/v1/auth/login", json={"email": account.email, "password": "wrong password"})
    unknown = await anon.post("/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    inactive_address = "inactive@example.com"
    assert (await signup(anon, inactive_address)).status_code == 201
    inactive = await anon.post("/v1/auth/login", json={"email": inactive_address, "password": PASSWORD})
    for response in (wrong, unknown, inactive):
        assert response.status_code == 401
        assert response.json() == {"error": {"code": "invalid_credentials", "message": "invalid email or password"}}
        assert "wrenn_sid" not in response.cookies

    async with app.state.sessionmaker() as db:
        await db.execute(update(User).where(User.id == account.user_id).values(is_active=False))
        await db.commit()
    deactivated = await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert deactivated.status_code == 401
    assert deactivated.json()["error"]["code"] == "invalid_credentials"


async def test_login_rate_limited_per_email_and_ip(
    app: FastAPI, settings: Settings, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    limit = settings.login_attempts_per_minute
    for _ in range(limit):
        response = await anon.post("/v1/auth/login", json={"email": account.email, "password": "bad password"})
        assert response.status_code == 401
    blocked = await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert blocked.status_code == 429  # even the right password, until the window passes
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60

    # Per email: another address from another client IP is still blocked for this email only.
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as other_ip:
        same_email = await other_ip.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert same_email.status_code == 429
        other = await account_factory()
        allowed = await other_ip.post("/v1/auth/login", json={"email": other.email, "password": PASSWORD})
        assert allowed.status_code == 200

    # Per IP: the blocked IP cannot try other addresses either.
    per_ip = await anon.post("/v1/auth/login", json={"email": "someone@example.com", "password": "x"})
    assert per_ip.status_code == 429


async def test_logout_revokes_only_this_session(account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory()
    assert (await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})).status_code == 200
    use_csrf(anon)
    old_sid = anon.cookies["wrenn_sid"]
    response = await anon.post("/v1/auth/logout")
    assert response.status_code == 204
    cleared = [c for c in response.headers.get_list("set-cookie") if "Max-Age=0" in c]
    assert {c.split("=", 1)[0] for c in cleared} == {"wrenn_sid", "wrenn_csrf"}
    anon.cookies.set("wrenn_sid", old_sid)
    assert (await anon.get("/v1/me")).status_code == 401
    assert (await account.client.get("/v1/me")).status_code == 200  # the other session lives on


async def test_logout_all_revokes_every_session(
    app: FastAPI, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    assert (await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})).status_code == 200
    response = await account.client.post("/v1/auth/logout-all")
    assert response.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401
    assert (await anon.get("/v1/me")).status_code == 401
    async with app.state.sessionmaker() as db:
        sessions = (await db.execute(select(AuthSession).where(AuthSession.user_id == account.user_id))).scalars()
        assert all(s.revoked_at is not None for s in sessions)


async def test_logout_needs_a_session(anon: httpx.AsyncClient) -> None:
    response = await anon.post("/v1/auth/logout")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert (await anon.post("/v1/auth/logout-all")).status_code == 401
