"""Every identity route answers bad input with 400 `{"error": {"code", "message"}}` naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Register

LONG = "x" * 101

PUBLIC_CASES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/auth/signup", {"password": "12345678", "name": "A"}, "email"),
    ("POST", "/v1/auth/signup", {"email": "not-an-email", "password": "12345678", "name": "A"}, "email"),
    ("POST", "/v1/auth/signup", {"email": "a@b.co", "password": "1234567", "name": "A"}, "password"),
    ("POST", "/v1/auth/signup", {"email": "a@b.co", "password": "12345678", "name": LONG}, "name"),
    ("POST", "/v1/auth/signup", {"email": "a@b.co", "password": "12345678", "name": "   "}, "name"),
    ("POST", "/v1/auth/signup", {"email": "a@b.co", "password": 12345678, "name": "A"}, "password"),
    ("POST", "/v1/auth/activate", {}, "token"),
    ("POST", "/v1/auth/activate", {"token": ["x"]}, "token"),
    ("POST", "/v1/auth/login", {"email": "a@b.co"}, "password"),
    ("POST", "/v1/auth/login", {"email": "@b.co", "password": "x"}, "email"),
    ("POST", "/v1/me/password/reset", {"email": "nope"}, "email"),
    ("POST", "/v1/me/password/reset/confirm", {"new_password": "12345678"}, "token"),
    ("POST", "/v1/me/password/reset/confirm", {"token": "t", "new_password": "short"}, "new_password"),
    ("GET", "/auth/oauth/github/callback?code=" + "c" * 600, None, "code"),
]

SESSION_CASES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/auth/switch-team", {}, "team_id"),
    ("POST", "/v1/auth/switch-team", {"team_id": 5}, "team_id"),
    ("PATCH", "/v1/me", {"name": ""}, "name"),
    ("PATCH", "/v1/me", {"name": LONG}, "name"),
    ("DELETE", "/v1/me", {}, "confirmation"),
    ("POST", "/v1/me/password", {"current_password": "x"}, "new_password"),
    ("POST", "/v1/me/password", {"new_password": "x" * 2000}, "new_password"),
    ("DELETE", "/v1/me/sessions/" + "s" * 65, None, "id"),
    ("DELETE", "/v1/me/providers/" + "p" * 33, None, "provider"),
]


def _assert_names(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field}:"), error["message"]


@pytest.mark.parametrize(("method", "path", "body", "field"), PUBLIC_CASES)
async def test_public_routes(anon: httpx.AsyncClient, method: str, path: str, body: Any, field: str) -> None:
    _assert_names(await anon.request(method, path, json=body), field)


async def test_session_routes(account_factory: Register) -> None:
    account = await account_factory()
    for method, path, body, field in SESSION_CASES:
        _assert_names(await account.client.request(method, path, json=body), field)
    assert (await account.client.get("/v1/me")).json()["name"] == "Ada"  # nothing changed


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null"])
async def test_bodies_that_are_not_objects(anon: httpx.AsyncClient, raw: bytes) -> None:
    response = await anon.post("/v1/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
