"""`/v1/users/search`: email prefix containing "@", at most 10, deleted users left out."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from wrenn_platform.control_plane.db.models import User
from wrenn_platform.control_plane.db.types import utcnow

from ..conftest import UserFactory
from .helpers import assert_error


async def test_search_by_prefix(make_user: UserFactory) -> None:
    alice = await make_user("alice@wrenn.test")
    await make_user("alice@other.test")
    await make_user("alicia@wrenn.test")
    response = await alice.client.get("/v1/users/search", params={"email": "Alice@"})
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"user_id": response.json()[0]["user_id"], "email": "alice@other.test"},
        {"user_id": alice.id, "email": "alice@wrenn.test"},
    ]
    found = (await alice.client.get("/v1/users/search", params={"email": "alice@w"})).json()
    assert [u["email"] for u in found] == ["alice@wrenn.test"]


async def test_prefix_must_contain_at(make_user: UserFactory) -> None:
    alice = await make_user()
    assert_error(await alice.client.get("/v1/users/search", params={"email": "alice"}), 400, "invalid_request", "@")
    assert_error(await alice.client.get("/v1/users/search"), 400, "invalid_request", "email")
    assert_error(await alice.client.get("/v1/users/search", params={"email": "a@" + "x" * 400}), 400,
                 "invalid_request", "email")


async def test_at_most_ten_and_no_deleted_users(app: FastAPI, make_user: UserFactory) -> None:
    users = [await make_user(f"x@{i:02d}.test") for i in range(12)]
    async with app.state.sessionmaker() as db:
        gone = await db.get(User, users[1].id)
        assert gone is not None
        gone.deleted_at = utcnow()
        await db.commit()
    found = (await users[0].client.get("/v1/users/search", params={"email": "x@"})).json()
    assert [u["email"] for u in found] == [f"x@{i:02d}.test" for i in range(12) if i != 1][:10]
    assert (await users[0].client.get("/v1/users/search", params={"email": "x@01"})).json() == []


async def test_wildcards_are_literal(make_user: UserFactory) -> None:
    alice = await make_user("a_b@wrenn.test")
    await make_user("axb@wrenn.test")
    found = (await alice.client.get("/v1/users/search", params={"email": "a_b@"})).json()
    assert [u["email"] for u in found] == ["a_b@wrenn.test"]
    assert (await alice.client.get("/v1/users/search", params={"email": "%@"})).json() == []


async def test_search_needs_a_session(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/users/search", params={"email": "a@"}), 401, "unauthorized")
