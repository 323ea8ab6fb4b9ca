"""`/v1/admin/teams*`: list every team, toggle BYOC, delete any team (soft, like the owner's)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from wrenn_platform.control_plane.db.models import Team

from ..conftest import SessionFactory, UserFactory
from ..teams.helpers import add_member, assert_error


async def test_list_teams_with_member_counts(make_user: UserFactory, session_for: SessionFactory) -> None:
    root = await make_user(admin=True)
    owner = await make_user()
    await add_member(owner, make_user, session_for)
    response = await root.client.get("/v1/admin/teams")
    assert response.status_code == 200, response.text
    teams = {t["id"]: t for t in response.json()}
    assert owner.team_id in teams and root.team_id in teams
    team = teams[owner.team_id]
    assert set(team) == {"id", "name", "slug", "is_byoc", "created_at", "deleted_at", "member_count"}
    assert (team["member_count"], team["is_byoc"], team["deleted_at"]) == (2, False, None)


async def test_set_byoc(app: FastAPI, make_user: UserFactory) -> None:
    root = await make_user(admin=True)
    owner = await make_user()
    path = f"/v1/admin/teams/{owner.team_id}/byoc"
    assert (await root.client.put(path, json={"byoc": True})).status_code == 204
    teams = {t["id"]: t for t in (await root.client.get("/v1/admin/teams")).json()}
    assert teams[owner.team_id]["is_byoc"] is True
    assert (await root.client.put(path, json={"byoc": False})).status_code == 204
    async with app.state.sessionmaker() as db:
        team = await db.get(Team, owner.team_id)
        assert team is not None and team.is_byoc is False
    assert_error(await root.client.put("/v1/admin/teams/team-000000000000/byoc", json={"byoc": True}), 404)


@pytest.mark.parametrize("body", [{}, {"byoc": "true"}, {"byoc": None}, {"enabled": True}])
async def test_byoc_bad_body(make_user: UserFactory, body: dict[str, object]) -> None:
    root = await make_user(admin=True)
    owner = await make_user()
    assert_error(await root.client.put(f"/v1/admin/teams/{owner.team_id}/byoc", json=body), 400, "invalid_request",
                 "byoc")


async def test_admin_delete_team(
    make_user: UserFactory, session_for: SessionFactory, key_client: httpx.AsyncClient
) -> None:
    root = await make_user(admin=True)
    owner = await make_user()
    member = await add_member(owner, make_user, session_for)
    key = (await owner.client.post("/v1/api-keys", json={})).json()["key"]
    assert (await key_client.get("/_test/key-team", headers={"X-API-Key": key})).status_code == 200
    assert (await root.client.delete(f"/v1/admin/teams/{owner.team_id}")).status_code == 204

    teams = {t["id"]: t for t in (await root.client.get("/v1/admin/teams")).json()}
    assert teams[owner.team_id]["deleted_at"] is not None  # soft: still listed for operators
    assert_error(await owner.client.get("/v1/teams"), 401)
    assert_error(await member.client.get(f"/v1/teams/{owner.team_id}"), 401)
    assert owner.team_id not in {t["id"] for t in (await member.user.client.get("/v1/teams")).json()}
    assert_error(await key_client.get("/_test/key-team", headers={"X-API-Key": key}), 401, "unauthorized")
    assert_error(await root.client.delete(f"/v1/admin/teams/{owner.team_id}"), 404, "not_found")
    assert_error(await root.client.put(f"/v1/admin/teams/{owner.team_id}/byoc", json={"byoc": True}), 404)
    assert_error(await root.client.delete("/v1/admin/teams/bad%20id"), 400, "invalid_request", "id")
