"""`/v1/teams` and `/v1/teams/{id}`: create, list with role, get, rename, soft delete."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.db.models import AuthSession, Capsule, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow

from ..conftest import SessionFactory, UserFactory
from .helpers import add_member, assert_error


async def test_create_team_makes_the_caller_owner(make_user: UserFactory) -> None:
    alice = await make_user()
    response = await alice.client.post("/v1/teams", json={"name": "  Research_2 team "})
    assert response.status_code == 201, response.text
    team = response.json()
    assert set(team) == {"id", "name", "slug", "created_at", "role"}
    assert team["name"] == "Research_2 team"
    assert team["role"] == "owner"
    assert re.fullmatch(r"[0-9a-f]{6}-[0-9a-f]{6}", team["slug"])

    listed = (await alice.client.get("/v1/teams")).json()
    assert {(t["id"], t["role"]) for t in listed} == {(alice.team_id, "owner"), (team["id"], "owner")}


@pytest.mark.parametrize("name", ["", "   ", "bad-name", "semi;colon", "é", "x" * 129])
async def test_create_team_rejects_invalid_names(make_user: UserFactory, name: str) -> None:
    alice = await make_user()
    assert_error(await alice.client.post("/v1/teams", json={"name": name}), 400, "invalid_request", "name")


async def test_team_name_of_128_characters_is_stored_whole(make_user: UserFactory) -> None:
    alice = await make_user()
    name = "N" * 128
    response = await alice.client.post("/v1/teams", json={"name": name})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


@pytest.mark.parametrize("body", [None, {}, {"name": 5}, [], {"name": None}])
async def test_create_team_bad_body_names_the_field(make_user: UserFactory, body: object) -> None:
    alice = await make_user()
    response = await alice.client.post("/v1/teams", json=body)
    assert_error(response, 400, "invalid_request")


async def test_list_shows_each_role_and_hides_deleted_teams(
    make_user: UserFactory, session_for: SessionFactory
) -> None:
    owner = await make_user()
    bob = await add_member(owner, make_user, session_for, role="admin")
    roles = {t["id"]: t["role"] for t in (await bob.user.client.get("/v1/teams")).json()}
    assert roles == {bob.user.team_id: "owner", owner.team_id: "admin"}

    assert (await owner.client.delete(f"/v1/teams/{owner.team_id}")).status_code == 204
    roles = {t["id"]: t["role"] for t in (await bob.user.client.get("/v1/teams")).json()}
    assert roles == {bob.user.team_id: "owner"}


async def test_get_team_returns_team_and_members(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    carol = await add_member(owner, make_user, session_for)
    response = await carol.client.get(f"/v1/teams/{owner.team_id}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert set(detail) == {"team", "members"}
    assert set(detail["team"]) == {"id", "name", "slug", "created_at"}
    assert detail["team"]["id"] == owner.team_id
    members = {m["user_id"]: m for m in detail["members"]}
    assert set(members) == {owner.id, carol.user.id}
    assert members[owner.id]["role"] == "owner" and members[owner.id]["email"] == owner.email
    assert members[carol.user.id]["role"] == "member"
    assert set(members[owner.id]) == {"user_id", "email", "role", "joined_at"}


async def test_another_team_is_forbidden_without_revealing_whether_it_exists(make_user: UserFactory) -> None:
    alice, mallory = await make_user(), await make_user()
    existing = await mallory.client.get(f"/v1/teams/{alice.team_id}")
    missing = await mallory.client.get("/v1/teams/team-000000000000")
    assert_error(existing, 403, "forbidden")
    assert_error(missing, 403, "forbidden")
    assert existing.json() == missing.json()
    for method, path, body in [
        ("PATCH", "", {"name": "Taken"}),
        ("DELETE", "", None),
        ("GET", "/members", None),
        ("POST", "/members", {"email": mallory.email}),
        ("POST", "/leave", None),
    ]:
        response = await mallory.client.request(method, f"/v1/teams/{alice.team_id}{path}", json=body)
        assert_error(response, 403, "forbidden")
    assert (await alice.client.get(f"/v1/teams/{alice.team_id}")).json()["team"]["name"] == "Test User's Team"


async def test_session_team_gone_or_membership_gone(app: FastAPI, make_user: UserFactory) -> None:
    """Written straight to the DB (the routes also end such sessions): the checks do not rely on it."""
    alice, bob = await make_user(), await make_user()
    async with app.state.sessionmaker() as db:
        team = await db.get(Team, alice.team_id)
        member = await db.get(TeamMember, (bob.team_id, bob.id))
        assert team is not None and member is not None
        team.deleted_at = utcnow()
        await db.delete(member)
        await db.commit()
    assert_error(await alice.client.get(f"/v1/teams/{alice.team_id}"), 404, "not_found")
    assert_error(await bob.client.get(f"/v1/teams/{bob.team_id}"), 403, "forbidden", "member")
    assert_error(await bob.client.get("/v1/api-keys"), 403, "forbidden", "member")


async def test_team_routes_need_a_session(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    assert_error(await client.get("/v1/teams"), 401, "unauthorized")
    assert_error(await client.get(f"/v1/teams/{alice.team_id}"), 401, "unauthorized")
    assert_error(await client.post("/v1/teams", json={"name": "x"}), 401, "unauthorized")


async def test_writes_need_the_csrf_header(make_user: UserFactory) -> None:
    alice = await make_user()
    no_header = {"X-CSRF-Token": ""}
    assert_error(await alice.client.post("/v1/teams", json={"name": "x"}, headers=no_header), 403, "csrf_failed")
    assert_error(
        await alice.client.patch(f"/v1/teams/{alice.team_id}", json={"name": "x"}, headers={"X-CSRF-Token": "wrong"}),
        403,
        "csrf_failed",
    )
    assert_error(await alice.client.delete(f"/v1/teams/{alice.team_id}", headers=no_header), 403, "csrf_failed")
    assert len((await alice.client.get("/v1/teams")).json()) == 1


async def test_bad_team_id_in_path_is_400(make_user: UserFactory) -> None:
    alice = await make_user()
    assert_error(await alice.client.get("/v1/teams/not%20an%20id"), 400, "invalid_request", "id")


async def test_rename_needs_admin_or_owner(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    path = f"/v1/teams/{owner.team_id}"

    assert_error(await member.client.patch(path, json={"name": "Members Rule"}), 403, "forbidden")
    assert (await admin.client.patch(path, json={"name": "Admins Rule"})).status_code == 204
    assert (await owner.client.get(path)).json()["team"]["name"] == "Admins Rule"
    assert (await owner.client.patch(path, json={"name": "Owner Rules"})).status_code == 204
    assert (await member.client.get(path)).json()["team"]["name"] == "Owner Rules"
    assert_error(await owner.client.patch(path, json={"name": "no-dashes"}), 400, "invalid_request", "name")


async def test_delete_is_owner_only(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    path = f"/v1/teams/{owner.team_id}"
    assert_error(await admin.client.delete(path), 403, "forbidden", "owner")
    assert_error(await member.client.delete(path), 403, "forbidden", "owner")
    assert (await owner.client.get(path)).status_code == 200


async def test_delete_is_soft_and_ends_keys_and_sessions(
    app: FastAPI, make_user: UserFactory, session_for: SessionFactory, key_client: httpx.AsyncClient
) -> None:
    owner = await make_user()
    member = await add_member(owner, make_user, session_for)
    key = (await owner.client.post("/v1/api-keys", json={"name": "ci"})).json()["key"]
    other = await make_user()  # another team, untouched
    other_key = (await other.client.post("/v1/api-keys", json={"name": "ci"})).json()["key"]

    assert (await key_client.get("/_test/key-team", headers={"X-API-Key": key})).status_code == 200
    assert (await owner.client.delete(f"/v1/teams/{owner.team_id}")).status_code == 204
    assert_error(await key_client.get("/_test/key-team", headers={"X-API-Key": key}), 401, "unauthorized")
    assert (await key_client.get("/_test/key-team", headers={"X-API-Key": other_key})).status_code == 200

    # Sessions scoped to the deleted team end, for the owner and the member alike.
    assert_error(await owner.client.get("/v1/teams"), 401)
    assert_error(await member.client.get(f"/v1/teams/{owner.team_id}"), 401)
    assert (await member.user.client.get("/v1/teams")).status_code == 200  # their own team's session
    assert (await other.client.get("/v1/teams")).status_code == 200

    async with app.state.sessionmaker() as db:
        team = await db.get(Team, owner.team_id)
        assert team is not None and team.deleted_at is not None  # the record and its slug stay
        user = await db.get(User, owner.id)
        assert user is not None and user.default_team_id is None  # no other team to default to
        sessions = (await db.scalars(select(AuthSession).where(AuthSession.team_id == owner.team_id))).all()
        assert sessions and all(s.revoked_at is not None for s in sessions)


async def test_delete_destroys_the_team_capsules(app: FastAPI, make_user: UserFactory) -> None:
    """Deleting a team marks its live capsules `stopping` (the reconciler destroys them)."""
    owner, other = await make_user(), await make_user()
    async with app.state.sessionmaker() as db:
        running = Capsule(team_id=owner.team_id, status="running")
        paused = Capsule(team_id=owner.team_id, status="paused")
        stopped = Capsule(team_id=owner.team_id, status="stopped")
        elsewhere = Capsule(team_id=other.team_id, status="running")
        db.add_all([running, paused, stopped, elsewhere])
        await db.commit()
        ids = [running.id, paused.id, stopped.id, elsewhere.id]
    assert (await owner.client.delete(f"/v1/teams/{owner.team_id}")).status_code == 204
    async with app.state.sessionmaker() as db:
        rows = (await db.execute(select(Capsule.id, Capsule.status).where(Capsule.id.in_(ids)))).all()
    status = {capsule_id: value for capsule_id, value in rows}
    assert [status[capsule_id] for capsule_id in ids] == ["stopping", "stopping", "stopped", "running"]


async def test_owner_default_team_moves_to_another_team_on_delete(app: FastAPI, make_user: UserFactory) -> None:
    owner = await make_user()
    second = (await owner.client.post("/v1/teams", json={"name": "Second"})).json()
    assert (await owner.client.delete(f"/v1/teams/{owner.team_id}")).status_code == 204
    async with app.state.sessionmaker() as db:
        user = await db.get(User, owner.id)
        assert user is not None and user.default_team_id == second["id"]

