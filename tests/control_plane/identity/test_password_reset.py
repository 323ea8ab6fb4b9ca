"""Password reset: request always 204 (nothing sent for unknown emails), confirm single-use, 15 min."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from wrenn_platform.control_plane.console import INDEX, STATIC_DIR
from wrenn_platform.control_plane.db.models import OneTimeToken
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.settings import Settings

from .conftest import Register
from .helpers import PASSWORD, body_of, messages_to, outbox, signup, token_in


async def test_reset_flow(app: FastAPI, settings: Settings, account_factory: Register, anon: httpx.AsyncClient) -> None:
    account = await account_factory()
    before = len(outbox(settings))
    response = await anon.post("/v1/me/password/reset", json={"email": account.email.upper()})
    assert response.status_code == 204 and response.content == b""
    (message,) = messages_to(settings, account.email)[1:]
    assert len(outbox(settings)) == before + 1
    assert f"{settings.public_url}/reset-password?token=" in body_of(message)
    async with app.state.sessionmaker() as db:
        query = select(OneTimeToken).where(OneTimeToken.purpose == "password_reset")
        token_row = (await db.execute(query)).scalar_one()
        assert abs((token_row.expires_at - token_row.created_at) - timedelta(minutes=15)) < timedelta(seconds=1)
    token = token_in(message)

    short = await anon.post("/v1/me/password/reset/confirm", json={"token": token, "new_password": "short"})
    assert short.status_code == 400 and short.json()["error"]["message"].startswith("new_password")
    confirmed = await anon.post("/v1/me/password/reset/confirm", json={"token": token, "new_password": "reset-pass-1"})
    assert confirmed.status_code == 204
    assert (await account.client.get("/v1/me")).status_code == 401  # every session revoked
    reused = await anon.post("/v1/me/password/reset/confirm", json={"token": token, "new_password": "reset-pass-2"})
    assert reused.status_code == 400 and reused.json()["error"]["code"] == "invalid_token"
    assert (await anon.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})).status_code == 401
    login = await anon.post("/v1/auth/login", json={"email": account.email, "password": "reset-pass-1"})
    assert login.status_code == 200


async def test_reset_request_never_enumerates(
    app: FastAPI, settings: Settings, account_factory: Register, anon: httpx.AsyncClient
) -> None:
    account = await account_factory()
    inactive = "not-yet-active@example.com"
    assert (await signup(anon, inactive)).status_code == 201
    before = outbox(settings)
    for address in ("nobody@example.com", inactive):
        response = await anon.post("/v1/me/password/reset", json={"email": address})
        assert response.status_code == 204 and response.content == b""
    assert len(outbox(settings)) == len(before)  # nothing sent for unknown or inactive addresses
    # A second request within the cooldown answers the same and sends nothing more.
    for _ in range(2):
        assert (await anon.post("/v1/me/password/reset", json={"email": account.email})).status_code == 204
    assert len(messages_to(settings, account.email)) == 2  # activation + one reset


async def test_expired_reset_token(app: FastAPI, settings: Settings, account_factory: Register,
                                   anon: httpx.AsyncClient) -> None:
    account = await account_factory()
    assert (await anon.post("/v1/me/password/reset", json={"email": account.email})).status_code == 204
    token = token_in(messages_to(settings, account.email)[-1])
    async with app.state.sessionmaker() as db:
        await db.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    expired = await anon.post("/v1/me/password/reset/confirm", json={"token": token, "new_password": "reset-pass-1"})
    assert expired.status_code == 400
    assert (await account.client.get("/v1/me")).status_code == 200  # nothing happened
    # An activation token is not a reset token.
    other = await anon.post("/v1/me/password/reset/confirm",
                            json={"token": token_in(messages_to(settings, account.email)[0]), "new_password": "x" * 9})
    assert other.status_code == 400


async def test_link_pages_open_the_console_which_posts_the_token(anon: httpx.AsyncClient) -> None:
    script = (STATIC_DIR / "js" / "pages" / "auth.js").read_text()
    for path, endpoint in (("/reset-password", "/v1/me/password/reset/confirm"), ("/activate", "/v1/auth/activate")):
        page = await anon.get(f"{path}?token=abc")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        assert page.text == INDEX.read_text() and f'"{endpoint}"' in script  # tests/console follows the links
