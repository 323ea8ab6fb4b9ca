"""The app starts on both databases, migrates, and answers errors in the contract's shape."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI

from wrenn_platform.control_plane.auth.principal import Principal, require_session

from .conftest import UserFactory


async def test_health_answers_when_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_unknown_route_uses_error_body(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_session_cookie_resolves_to_its_user(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    @app.get("/_test/whoami")
    async def whoami(principal: Principal = Depends(require_session)) -> dict[str, str]:
        return {"user_id": principal.user_id or "", "team_id": principal.team_id}

    user = await make_user()
    response = await user.client.get("/_test/whoami")
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": user.id, "team_id": user.team_id}
    anonymous = await client.get("/_test/whoami")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
