"""CSRF double submit on cookie-authenticated writes, API keys exempt; cookie flags."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.auth.principal import Principal, require_key_or_session
from wrenn_platform.control_plane.db.models import ApiKey
from wrenn_platform.control_plane.security import new_api_key, sha256_hex
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .conftest import Register
from .helpers import PASSWORD, register


async def test_csrf_required_on_cookie_writes(account_factory: Register) -> None:
    account = await account_factory()
    client = account.client
    good = client.headers["X-CSRF-Token"]
    for headers in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "wrong"}):
        response = await client.patch("/v1/me", json={"name": "Changed"}, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "csrf_failed"
    del client.headers["X-CSRF-Token"]
    missing = await client.post("/v1/auth/logout")
    assert missing.status_code == 403
    assert (await client.get("/v1/me")).json()["name"] == "Ada"  # GET needs no token; nothing changed
    # A header equal to the cookie is not enough without the cookie itself.
    csrf_cookie = client.cookies["wrenn_csrf"]
    client.cookies.delete("wrenn_csrf")
    no_cookie = await client.patch("/v1/me", json={"name": "Changed"}, headers={"X-CSRF-Token": csrf_cookie})
    assert no_cookie.status_code == 403
    client.cookies.set("wrenn_csrf", csrf_cookie)
    ok = await client.patch("/v1/me", json={"name": "Changed"}, headers={"X-CSRF-Token": good})
    assert ok.status_code == 204


async def test_api_key_requests_are_exempt(app: FastAPI, account_factory: Register) -> None:
    @app.post("/_test/identity/whoami")
    async def whoami(principal: Principal = Depends(require_key_or_session)) -> dict[str, str]:
        return {"kind": principal.kind, "team_id": principal.team_id}

    account = await account_factory()
    key, prefix = new_api_key()
    async with app.state.sessionmaker() as db:
        db.add(ApiKey(team_id=account.team_id, created_by=account.user_id, name="ci", key_hash=sha256_hex(key),
                      key_prefix=prefix))
        await db.commit()
    async with make_client(app) as keyed:
        response = await keyed.post("/_test/identity/whoami", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert response.json() == {"kind": "api_key", "team_id": account.team_id}
    del account.client.headers["X-CSRF-Token"]
    assert (await account.client.post("/_test/identity/whoami")).status_code == 403


async def test_secure_flag_follows_setting(settings: Settings) -> None:
    for secure in (True, False):
        app = create_app(settings.model_copy(update={"secure_cookies": secure,
                                                     "data_dir": settings.data_dir / str(secure)}))
        async with app.router.lifespan_context(app):
            account = await register(app, app.state.settings)
            try:
                response = await account.client.post(
                    "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
                )
                cookies = response.headers.get_list("set-cookie")
                assert len(cookies) == 2
                assert all(("; Secure" in c) is secure for c in cookies)
                # A plain-HTTP client sends a Secure cookie back only if it is not Secure.
                assert (await account.client.get("/v1/me")).status_code == (401 if secure else 200)
            finally:
                await account.client.aclose()


async def test_secure_cookies_work_over_https(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"secure_cookies": True}))
    async with app.router.lifespan_context(app):
        account = await register(app, app.state.settings)
        await account.client.aclose()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as tls:
            login = await tls.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
            assert login.status_code == 200
            assert (await tls.get("/v1/me")).status_code == 200
