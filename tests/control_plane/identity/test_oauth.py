"""GitHub OAuth login, connect and disconnect against a fake GitHub on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.db.models import OAuthIdentity, TeamMember, User
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .fake_github import CLIENT_ID, CLIENT_SECRET, FakeGitHub, GitHubUser, serve_fake_github
from .helpers import PASSWORD, Account, new_email, register, use_csrf

SPA = "http://spa.example"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with serve_fake_github() as fake:
        yield fake


@pytest.fixture
async def oauth_app(settings: Settings, github: FakeGitHub) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={
        "github_client_id": CLIENT_ID, "github_client_secret": CLIENT_SECRET,
        "github_authorize_url": f"{github.url}/login/oauth/authorize",
        "github_token_url": f"{github.url}/login/oauth/access_token",
        "github_api_url": github.url, "oauth_redirect_url": SPA,
    }))
    async with app.router.lifespan_context(app):
        yield app


def gh_user(email: str, uid: int = 1001, verified: bool = True) -> GitHubUser:
    return GitHubUser(id=uid, login=f"octo{uid}", name="Octo Cat",
                      emails=[{"email": "other@example.com", "primary": False, "verified": True},
                              {"email": email, "primary": True, "verified": verified}])


async def follow(client: httpx.AsyncClient, auth_url: str) -> httpx.Response:
    """The browser's trip: provider's authorize page, then back to our callback."""
    async with httpx.AsyncClient() as browser:  # real HTTP to the fake provider on loopback
        at_provider = await browser.get(auth_url)
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["location"])
    assert back.path == "/auth/oauth/github/callback"
    return await client.get(f"{back.path}?{back.query}")


async def start_login(client: httpx.AsyncClient) -> str:
    response = await client.get("/auth/oauth/github")
    assert response.status_code == 302
    state_cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("wrenn_oauth_state="))
    assert "HttpOnly" in state_cookie and "SameSite=lax" in state_cookie and "Path=/auth/oauth" in state_cookie
    return response.headers["location"]


def error_of(response: httpx.Response) -> str | None:
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{SPA}/auth/github/callback"
    return parse_qs(location.query).get("error", [None])[0]


async def test_login_creates_account_then_logs_in(oauth_app: FastAPI, github: FakeGitHub) -> None:
    address = new_email()
    github.next_user = gh_user(address)
    async with make_client(oauth_app) as client:
        auth_url = await start_login(client)
        query = parse_qs(urlsplit(auth_url).query)
        assert auth_url.startswith(f"{github.url}/login/oauth/authorize?")
        assert query["redirect_uri"] == ["http://testserver/auth/oauth/github/callback"]
        callback = await follow(client, auth_url)
        assert error_of(callback) is None
        assert urlsplit(callback.headers["location"]).query == ""  # no tokens in the URL
        assert client.cookies.get("wrenn_sid") and client.cookies.get("wrenn_csrf")
        me = (await client.get("/v1/me")).json()
        assert me == {"name": "Octo Cat", "email": address, "has_password": False, "providers": ["github"]}

    async with oauth_app.state.sessionmaker() as db:
        user = (await db.execute(select(User).where(User.email == address))).scalar_one()
        assert user.is_active and user.password_hash is None
        assert (await db.execute(select(TeamMember.role).where(TeamMember.user_id == user.id))).scalar_one() == "owner"

    async with make_client(oauth_app) as again:  # the same GitHub account logs in to the same user
        callback = await follow(again, await start_login(again))
        assert error_of(callback) is None
        assert (await again.get("/v1/me")).json()["email"] == address
    async with oauth_app.state.sessionmaker() as db:
        assert len((await db.execute(select(User).where(User.email == address))).all()) == 1


async def test_existing_email_is_not_linked_by_login(oauth_app: FastAPI, github: FakeGitHub) -> None:
    account = await register(oauth_app, oauth_app.state.settings)
    try:
        github.next_user = gh_user(account.email)
        async with make_client(oauth_app) as client:
            callback = await follow(client, await start_login(client))
            assert error_of(callback) == "email_taken"
            assert "wrenn_sid" not in client.cookies
    finally:
        await account.client.aclose()


async def test_callback_errors(oauth_app: FastAPI, github: FakeGitHub) -> None:
    github.next_user = gh_user(new_email())
    async with make_client(oauth_app) as client:
        await start_login(client)
        assert error_of(await client.get("/auth/oauth/github/callback", params={"code": "x"})) == "invalid_state"
        await start_login(client)
        wrong = await client.get("/auth/oauth/github/callback", params={"code": "x", "state": "forged"})
        assert error_of(wrong) == "invalid_state"
        state = await _state(client)
        bad_code = await client.get("/auth/oauth/github/callback", params={"code": "bogus", "state": state})
        assert error_of(bad_code) == "exchange_failed"
        assert "wrenn_oauth_state" not in client.cookies  # every callback ends the flow
        fresh = await _state(client)  # control: a cookie set by hand is sent like the server's
        client.cookies.clear()
        client.cookies.set("wrenn_oauth_state", fresh, domain="testserver.local", path="/auth/oauth")
        control = await client.get("/auth/oauth/github/callback", params={"code": "bogus", "state": fresh})
        assert error_of(control) == "exchange_failed"
        client.cookies.set("wrenn_oauth_state", state, domain="testserver.local", path="/auth/oauth")
        reused = await client.get("/auth/oauth/github/callback", params={"code": "bogus", "state": state})
        assert error_of(reused) == "invalid_state"  # single use, on the server too

        missing = await client.get("/auth/oauth/github/callback", params={"state": await _state(client)})
        assert error_of(missing) == "missing_code"
        github.next_user = None  # the user clicks "Cancel" at GitHub
        assert error_of(await follow(client, await start_login(client))) == "access_denied"
        github.next_user = gh_user(new_email(), uid=77, verified=False)
        github.next_user.emails = [e | {"verified": False} for e in github.next_user.emails]
        assert error_of(await follow(client, await start_login(client))) == "access_denied"  # no verified email
        assert "wrenn_sid" not in client.cookies

    # A state from one browser does not work in another (the cookie binds it).
    async with make_client(oauth_app) as first, make_client(oauth_app) as second:
        github.next_user = gh_user(new_email())
        stolen = await follow(second, await start_login(first))
        assert error_of(stolen) == "invalid_state"


async def _state(client: httpx.AsyncClient) -> str:
    return parse_qs(urlsplit(await start_login(client)).query)["state"][0]


async def test_connect_and_disconnect(oauth_app: FastAPI, github: FakeGitHub) -> None:
    account: Account = await register(oauth_app, oauth_app.state.settings)
    try:
        client = account.client
        github.next_user = gh_user("github-address@example.com", uid=555)
        connect = await client.get("/v1/me/providers/github/connect")
        assert connect.status_code == 200
        auth_url = connect.json()["auth_url"]
        assert auth_url.startswith(f"{github.url}/login/oauth/authorize?")
        callback = await follow(client, auth_url)
        assert error_of(callback) is None
        assert (await client.get("/v1/me")).json()["providers"] == ["github"]
        async with oauth_app.state.sessionmaker() as db:
            identity = (await db.execute(select(OAuthIdentity))).scalar_one()
            assert identity.user_id == account.user_id and identity.provider_user_id == "555"

        # The linked GitHub account now logs in to this account.
        async with make_client(oauth_app) as browser:
            assert error_of(await follow(browser, await start_login(browser))) is None
            assert (await browser.get("/v1/me")).json()["email"] == account.email

        # Another Wrenn account cannot link the same GitHub account.
        other = await register(oauth_app, oauth_app.state.settings)
        try:
            connect_other = await other.client.get("/v1/me/providers/github/connect")
            taken = await follow(other.client, connect_other.json()["auth_url"])
            assert error_of(taken) == "email_taken"
        finally:
            await other.client.aclose()

        assert (await client.delete("/v1/me/providers/github")).status_code == 204
        assert (await client.get("/v1/me")).json()["providers"] == []
        again = await client.delete("/v1/me/providers/github")
        assert again.status_code == 404
        assert (await client.delete("/v1/me/providers/gitlab")).status_code == 404
    finally:
        await account.client.aclose()


async def test_last_login_method_cannot_be_removed(oauth_app: FastAPI, github: FakeGitHub) -> None:
    github.next_user = gh_user(new_email(), uid=9001)
    async with make_client(oauth_app) as client:
        assert error_of(await follow(client, await start_login(client))) is None
        use_csrf(client)
        refused = await client.delete("/v1/me/providers/github")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "last_login_method"
        added = await client.post("/v1/me/password",
                                  json={"new_password": "now-a-password", "confirm_password": "now-a-password"})
        assert added.status_code == 204  # signs out everywhere
        me = (await client.get("/v1/me")).status_code
        assert me == 401
        email = (await _email_of(oauth_app, "9001"))
        login = await client.post("/v1/auth/login", json={"email": email, "password": "now-a-password"})
        assert login.status_code == 200
        use_csrf(client)
        assert (await client.delete("/v1/me/providers/github")).status_code == 204


async def _email_of(app: FastAPI, provider_user_id: str) -> str:
    async with app.state.sessionmaker() as db:
        identity = (await db.execute(
            select(OAuthIdentity).where(OAuthIdentity.provider_user_id == provider_user_id))).scalar_one()
        return identity.email


async def test_unconfigured_or_unknown_provider_is_404(app: FastAPI, oauth_app: FastAPI) -> None:
    async with make_client(app) as client:  # `app` has no GitHub client id
        assert (await client.get("/auth/oauth/github")).status_code == 404
    account = await register(app, app.state.settings)
    try:
        response = await account.client.get("/v1/me/providers/github/connect")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    finally:
        await account.client.aclose()
    async with make_client(oauth_app) as client:
        assert (await client.get("/auth/oauth/gitlab")).status_code == 404
    assert PASSWORD
