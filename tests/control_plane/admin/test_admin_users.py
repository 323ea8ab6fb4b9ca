"""`/v1/admin/users*`: list, deactivate (sessions end), grant/revoke admin, the last admin stays."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.db.models import User
from wrenn_platform.control_plane.db.types import utcnow

from ..conftest import UserFactory
from ..teams.helpers import assert_error


async def test_non_admins_get_403_everywhere(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    target = await make_user()
    calls = [
        ("GET", "/v1/admin/users", None),
        ("PUT", f"/v1/admin/users/{target.id}/active", {"active": False}),
        ("PUT", f"/v1/admin/users/{target.id}/admin", {"admin": True}),
        ("GET", "/v1/admin/teams", None),
        ("PUT", f"/v1/admin/teams/{target.team_id}/byoc", {"byoc": True}),
        ("DELETE", f"/v1/admin/teams/{target.team_id}", None),
    ]
    for method, path, body in calls:
        assert_error(await user.client.request(method, path, json=body), 403, "forbidden")
        assert_error(await client.request(method, path, json=body), 401, "unauthorized")
    assert (await target.client.get("/v1/teams")).status_code == 200


async def test_list_users(make_user: UserFactory) -> None:
    admin = await make_user("root@wrenn.test", name="Root", admin=True)
    bob = await make_user("bob@wrenn.test", name="Bob")
    response = await admin.client.get("/v1/admin/users")
    assert response.status_code == 200, response.text
    users = {u["id"]: u for u in response.json()}
    assert set(users) == {admin.id, bob.id}
    assert set(users[bob.id]) == {"id", "email", "name", "is_active", "is_admin", "created_at", "deleted_at"}
    assert (users[bob.id]["email"], users[bob.id]["is_admin"], users[bob.id]["is_active"]) == (
        "bob@wrenn.test", False, True)
    assert users[admin.id]["is_admin"] is True


async def test_deactivate_ends_sessions_and_reactivate(make_user: UserFactory) -> None:
    admin = await make_user(admin=True)
    bob = await make_user()
    assert (await bob.client.get("/v1/teams")).status_code == 200
    response = await admin.client.put(f"/v1/admin/users/{bob.id}/active", json={"active": False})
    assert response.status_code == 204, response.text
    assert_error(await bob.client.get("/v1/teams"), 401)
    users = {u["id"]: u for u in (await admin.client.get("/v1/admin/users")).json()}
    assert users[bob.id]["is_active"] is False

    assert (await admin.client.put(f"/v1/admin/users/{bob.id}/active", json={"active": True})).status_code == 204
    users = {u["id"]: u for u in (await admin.client.get("/v1/admin/users")).json()}
    assert users[bob.id]["is_active"] is True
    assert_error(await bob.client.get("/v1/teams"), 401)  # revoked sessions stay revoked


async def test_grant_and_revoke_admin_apply_on_the_next_request(make_user: UserFactory) -> None:
    root = await make_user(admin=True)
    bob = await make_user()
    assert_error(await bob.client.get("/v1/admin/users"), 403)
    assert (await root.client.put(f"/v1/admin/users/{bob.id}/admin", json={"admin": True})).status_code == 204
    assert (await bob.client.get("/v1/admin/users")).status_code == 200
    # Now two admins: bob may revoke root, and root loses access at once.
    assert (await bob.client.put(f"/v1/admin/users/{root.id}/admin", json={"admin": False})).status_code == 204
    assert_error(await root.client.get("/v1/admin/users"), 403, "forbidden")
    assert (await root.client.get("/v1/teams")).status_code == 200  # still logged in, just not admin


async def test_last_admin_cannot_be_revoked_or_deactivated(app: FastAPI, make_user: UserFactory) -> None:
    root = await make_user(admin=True)
    assert_error(await root.client.put(f"/v1/admin/users/{root.id}/admin", json={"admin": False}), 400, "last_admin")
    assert_error(await root.client.put(f"/v1/admin/users/{root.id}/active", json={"active": False}), 400,
                 "last_admin")
    assert (await root.client.get("/v1/admin/users")).status_code == 200

    # An inactive or deleted admin does not count as a remaining admin.
    other = await make_user(admin=True)
    async with app.state.sessionmaker() as db:
        user = await db.get(User, other.id)
        assert user is not None
        user.is_active = False
        await db.commit()
    assert_error(await root.client.put(f"/v1/admin/users/{root.id}/admin", json={"admin": False}), 400, "last_admin")
    second = await make_user(admin=True)
    assert (await second.client.put(f"/v1/admin/users/{root.id}/admin", json={"admin": False})).status_code == 204
    assert_error(await second.client.put(f"/v1/admin/users/{second.id}/active", json={"active": False}), 400,
                 "last_admin")
    # Granting again, or revoking a non-admin, is always allowed (idempotent).
    assert (await second.client.put(f"/v1/admin/users/{second.id}/admin", json={"admin": True})).status_code == 204
    assert (await second.client.put(f"/v1/admin/users/{root.id}/admin", json={"admin": False})).status_code == 204


async def test_unknown_and_deleted_users_are_404(app: FastAPI, make_user: UserFactory) -> None:
    root = await make_user(admin=True)
    gone = await make_user()
    async with app.state.sessionmaker() as db:
        user = await db.get(User, gone.id)
        assert user is not None
        user.deleted_at = utcnow()
        await db.commit()
    for user_id in ("usr-000000000000", gone.id):
        assert_error(await root.client.put(f"/v1/admin/users/{user_id}/admin", json={"admin": True}), 404)
        assert_error(await root.client.put(f"/v1/admin/users/{user_id}/active", json={"active": True}), 404)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("admin", {}, "admin"),
        ("admin", {"admin": "yes"}, "admin"),
        ("admin", {"admin": 1}, "admin"),
        ("active", {"active": None}, "active"),
        ("active", {"enabled": True}, "active"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    make_user: UserFactory, path: str, body: dict[str, object], field: str
) -> None:
    root = await make_user(admin=True)
    bob = await make_user()
    response = await root.client.put(f"/v1/admin/users/{bob.id}/{path}", json=body)
    assert_error(response, 400, "invalid_request", field)
    assert_error(await root.client.put(f"/v1/admin/users/bad%20id/{path}", json={path: True}), 400,
                 "invalid_request", "id")


async def test_admin_writes_need_csrf(make_user: UserFactory) -> None:
    root = await make_user(admin=True)
    bob = await make_user()
    response = await root.client.put(f"/v1/admin/users/{bob.id}/admin", json={"admin": True},
                                     headers={"X-CSRF-Token": ""})
    assert_error(response, 403, "csrf_failed")
    assert_error(await bob.client.get("/v1/admin/users"), 403)


@pytest.mark.parametrize("flag", ["admin", "active"])
async def test_two_admins_removing_each_other_at_once_leave_one(
    app: FastAPI, make_user: UserFactory, flag: str
) -> None:
    for _ in range(3):
        first, second = await make_user(admin=True), await make_user(admin=True)
        responses = await asyncio.gather(
            first.client.put(f"/v1/admin/users/{second.id}/{flag}", json={flag: False}),
            second.client.put(f"/v1/admin/users/{first.id}/{flag}", json={flag: False}),
        )
        assert sorted(r.status_code for r in responses)[0] == 204, [r.text for r in responses]
        assert all(r.status_code in (204, 400, 401, 403) for r in responses), [r.text for r in responses]
        async with app.state.sessionmaker() as db:
            admins = (await db.scalars(select(User.id).where(
                User.is_admin.is_(True), User.is_active.is_(True), User.deleted_at.is_(None)))).all()
        assert len(admins) == 1, [r.text for r in responses]
        # Back to one admin per round: the survivor steps down from the next round's point of view.
        async with app.state.sessionmaker() as db:
            for user_id in admins:
                user = await db.get(User, user_id)
                assert user is not None
                user.is_admin = False
            await db.commit()
