"""`/v1/teams/{id}/members*` and `/leave`: who may add, promote, demote and remove whom."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from wrenn_platform.control_plane.db.models import User
from wrenn_platform.control_plane.db.types import utcnow

from ..conftest import SessionFactory, UserFactory, make_client
from .helpers import add_member, assert_error


async def test_add_member_by_email(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner, bob = await make_user(), await make_user("Bob.Smith@Example.com")
    response = await owner.client.post(f"/v1/teams/{owner.team_id}/members", json={"email": " BOB.smith@example.COM "})
    assert response.status_code == 201, response.text
    member = response.json()
    assert set(member) == {"user_id", "email", "role", "joined_at"}
    assert (member["user_id"], member["email"], member["role"]) == (bob.id, "bob.smith@example.com", "member")

    listed = (await owner.client.get(f"/v1/teams/{owner.team_id}/members")).json()
    assert {(m["user_id"], m["role"]) for m in listed} == {(owner.id, "owner"), (bob.id, "member")}
    # Added instantly: bob lists the team and can act in it with a session there.
    assert owner.team_id in {t["id"] for t in (await bob.client.get("/v1/teams")).json()}
    bob_there = await session_for(bob.id, owner.team_id)
    assert (await bob_there.get(f"/v1/teams/{owner.team_id}")).status_code == 200


async def test_add_member_errors(app: FastAPI, make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    members = f"/v1/teams/{owner.team_id}/members"
    assert_error(await owner.client.post(members, json={"email": "nobody@example.com"}), 404, "not_found")
    member = await add_member(owner, make_user, session_for)
    assert_error(await owner.client.post(members, json={"email": member.user.email}), 400, "already_member")
    assert_error(await owner.client.post(members, json={"email": owner.email}), 400, "already_member")
    assert_error(await owner.client.post(members, json={"email": "not-an-email"}), 400, "invalid_request", "email")
    assert_error(await owner.client.post(members, json={}), 400, "invalid_request", "email")

    gone = await make_user()
    async with app.state.sessionmaker() as db:
        user = await db.get(User, gone.id)
        assert user is not None
        user.deleted_at = utcnow()
        await db.commit()
    assert_error(await owner.client.post(members, json={"email": gone.email}), 404, "not_found")


async def test_only_admins_and_owner_add_members(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    newcomer, other = await make_user(), await make_user()
    members = f"/v1/teams/{owner.team_id}/members"
    assert_error(await member.client.post(members, json={"email": newcomer.email}), 403, "forbidden")
    assert (await admin.client.post(members, json={"email": newcomer.email})).status_code == 201
    assert (await owner.client.post(members, json={"email": other.email})).status_code == 201
    assert len((await member.client.get(members)).json()) == 5


async def test_role_changes(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    other = await add_member(owner, make_user, session_for)

    def path(user_id: str) -> str:
        return f"/v1/teams/{owner.team_id}/members/{user_id}"

    # A member changes nobody's role; the owner's role cannot be changed by anyone.
    assert_error(await member.client.patch(path(other.user.id), json={"role": "admin"}), 403, "forbidden")
    assert_error(await member.client.patch(path(member.user.id), json={"role": "admin"}), 403, "forbidden")
    assert_error(await admin.client.patch(path(owner.id), json={"role": "member"}), 403, "forbidden", "owner")
    assert_error(await owner.client.patch(path(owner.id), json={"role": "admin"}), 403, "forbidden", "owner")
    # Admins and the owner promote and demote.
    assert (await admin.client.patch(path(member.user.id), json={"role": "admin"})).status_code == 204
    assert (await owner.client.patch(path(admin.user.id), json={"role": "member"})).status_code == 204
    roles = {m["user_id"]: m["role"] for m in (await owner.client.get(f"/v1/teams/{owner.team_id}/members")).json()}
    assert roles == {owner.id: "owner", admin.user.id: "member", member.user.id: "admin", other.user.id: "member"}
    # The change applies to the very next request of the demoted admin.
    assert_error(await admin.client.patch(path(other.user.id), json={"role": "admin"}), 403, "forbidden")
    assert_error(await admin.client.patch(f"/v1/teams/{owner.team_id}", json={"name": "Mine"}), 403, "forbidden")
    # Unknown target, invalid role.
    stranger = await make_user()
    assert_error(await owner.client.patch(path(stranger.id), json={"role": "admin"}), 404, "not_found")
    assert_error(await owner.client.patch(path(other.user.id), json={"role": "owner"}), 400, "invalid_request", "role")
    assert_error(await owner.client.patch(path(other.user.id), json={}), 400, "invalid_request", "role")
    assert_error(await owner.client.patch(path("bad id!"), json={"role": "admin"}), 400, "invalid_request", "uid")


async def test_remove_member(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    other = await add_member(owner, make_user, session_for)

    def path(user_id: str) -> str:
        return f"/v1/teams/{owner.team_id}/members/{user_id}"

    assert_error(await member.client.delete(path(other.user.id)), 403, "forbidden")
    assert_error(await admin.client.delete(path(owner.id)), 403, "forbidden", "owner")
    assert_error(await owner.client.delete(path(owner.id)), 403, "forbidden", "owner")
    stranger = await make_user()
    assert_error(await owner.client.delete(path(stranger.id)), 404, "not_found")

    assert (await admin.client.delete(path(other.user.id))).status_code == 204
    assert (await owner.client.delete(path(admin.user.id))).status_code == 204
    remaining = {m["user_id"] for m in (await owner.client.get(f"/v1/teams/{owner.team_id}/members")).json()}
    assert remaining == {owner.id, member.user.id}
    # A removed user's session in the team ends at once; their own team is untouched.
    assert_error(await admin.client.get(f"/v1/teams/{owner.team_id}"), 401)
    assert owner.team_id not in {t["id"] for t in (await admin.user.client.get("/v1/teams")).json()}
    assert_error(await owner.client.delete(path(admin.user.id)), 404, "not_found")


async def test_leave(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    admin = await add_member(owner, make_user, session_for, role="admin")
    member = await add_member(owner, make_user, session_for)
    leave = f"/v1/teams/{owner.team_id}/leave"

    assert_error(await owner.client.post(leave), 403, "forbidden", "owner")
    assert (await member.client.post(leave)).status_code == 204
    assert (await admin.client.post(leave)).status_code == 204
    members = (await owner.client.get(f"/v1/teams/{owner.team_id}/members")).json()
    assert [m["user_id"] for m in members] == [owner.id]
    assert_error(await member.client.post(leave), 401)  # that session was scoped to the team it left
    assert owner.team_id not in {t["id"] for t in (await member.user.client.get("/v1/teams")).json()}


@pytest.mark.parametrize("role", ["member", "admin"])
async def test_leaving_your_default_team_moves_the_default(
    app: FastAPI, make_user: UserFactory, session_for: SessionFactory, role: str
) -> None:
    owner = await make_user()
    joiner = await add_member(owner, make_user, session_for, role=role)
    async with app.state.sessionmaker() as db:
        user = await db.get(User, joiner.user.id)
        assert user is not None
        user.default_team_id = owner.team_id
        await db.commit()
    assert (await joiner.client.post(f"/v1/teams/{owner.team_id}/leave")).status_code == 204
    async with app.state.sessionmaker() as db:
        user = await db.get(User, joiner.user.id)
        assert user is not None and user.default_team_id == joiner.user.team_id


async def _key_status(app: FastAPI, key: str) -> int:
    async with make_client(app, headers={"X-API-Key": key}) as client:
        return (await client.get("/v1/capsules")).status_code


async def test_a_removed_member_loses_the_keys_they_created(
    app: FastAPI, make_user: UserFactory, session_for: SessionFactory
) -> None:
    owner = await make_user()
    carol = await add_member(owner, make_user, session_for)
    leaver = await add_member(owner, make_user, session_for)
    made = {}
    for who, client in (("carol", carol.client), ("leaver", leaver.client), ("owner", owner.client)):
        response = await client.post("/v1/api-keys", json={"name": f"{who}-key"})
        assert response.status_code == 201, response.text
        made[who] = response.json()
    carol_elsewhere = (await carol.user.client.post("/v1/api-keys", json={"name": "own-team"})).json()
    assert {await _key_status(app, k["key"]) for k in made.values()} == {200}

    assert (await owner.client.delete(f"/v1/teams/{owner.team_id}/members/{carol.user.id}")).status_code == 204
    assert await _key_status(app, made["carol"]["key"]) == 401  # at once, on the next request
    assert (await leaver.client.post(f"/v1/teams/{owner.team_id}/leave")).status_code == 204
    assert await _key_status(app, made["leaver"]["key"]) == 401
    # the team's other keys, and carol's keys of her own team, are untouched
    assert await _key_status(app, made["owner"]["key"]) == 200
    assert await _key_status(app, carol_elsewhere["key"]) == 200
    listed = {k["name"] for k in (await owner.client.get("/v1/api-keys")).json()}
    assert listed == {"owner-key"}
    entries = (await owner.client.get("/v1/audit-logs")).json()["entries"]
    deleted = {e["resource_id"] for e in entries if (e["resource_type"], e["action"]) == ("api_key", "delete")}
    assert deleted == {made["carol"]["id"], made["leaver"]["id"]}
