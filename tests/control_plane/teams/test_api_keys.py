"""`/v1/api-keys`: create (plaintext once), list, delete; keys work as `X-API-Key` for their team."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.db.models import ApiKey
from wrenn_platform.control_plane.security import sha256_hex

from ..conftest import SessionFactory, UserFactory
from .helpers import add_member, assert_error

KEY_FIELDS = {"id", "team_id", "name", "key_prefix", "created_at", "last_used", "key"}


async def test_create_shows_the_key_once_and_stores_only_its_hash(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    response = await alice.client.post("/v1/api-keys", json={"name": "  CI runner "})
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == KEY_FIELDS
    assert re.fullmatch(r"wrn_[0-9a-f]{32}", created["key"])
    assert created["key_prefix"] == created["key"][:12] + "..."
    assert (created["team_id"], created["name"], created["last_used"]) == (alice.team_id, "CI runner", None)

    listed = (await alice.client.get("/v1/api-keys")).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert listed[0]["key"] is None and set(listed[0]) == KEY_FIELDS

    async with app.state.sessionmaker() as db:
        row = (await db.scalars(select(ApiKey).where(ApiKey.id == created["id"]))).one()
        assert row.key_hash == sha256_hex(created["key"])
        assert created["key"] not in {row.key_hash, row.key_prefix, row.name}


async def test_default_name_and_bad_names(make_user: UserFactory) -> None:
    alice = await make_user()
    response = await alice.client.post("/v1/api-keys", json={})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Unnamed API Key"
    assert_error(await alice.client.post("/v1/api-keys", json={"name": ""}), 400, "invalid_request", "name")
    assert_error(await alice.client.post("/v1/api-keys", json={"name": "x" * 101}), 400, "invalid_request", "name")
    assert_error(await alice.client.post("/v1/api-keys", json={"name": 7}), 400, "invalid_request", "name")
    assert_error(await alice.client.post("/v1/api-keys", content=b"{", headers={"content-type": "application/json"}),
                 400, "invalid_request")


async def test_key_authenticates_for_its_team_and_records_last_used(
    make_user: UserFactory, key_client: httpx.AsyncClient
) -> None:
    alice = await make_user()
    created = (await alice.client.post("/v1/api-keys", json={"name": "ci"})).json()
    response = await key_client.get("/_test/key-team", headers={"X-API-Key": created["key"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"team_id": alice.team_id, "kind": "api_key"}
    last_used = (await alice.client.get("/v1/api-keys")).json()[0]["last_used"]
    assert last_used is not None and datetime.fromisoformat(last_used) >= datetime.fromisoformat(created["created_at"])

    wrong = created["key"][:-1] + ("0" if created["key"][-1] != "0" else "1")
    assert_error(await key_client.get("/_test/key-team", headers={"X-API-Key": wrong}), 401, "unauthorized")


async def test_keys_cannot_manage_keys(make_user: UserFactory, key_client: httpx.AsyncClient) -> None:
    alice = await make_user()
    key = (await alice.client.post("/v1/api-keys", json={"name": "ci"})).json()["key"]
    assert_error(await key_client.get("/v1/api-keys", headers={"X-API-Key": key}), 401, "unauthorized")
    assert_error(await key_client.post("/v1/api-keys", json={}, headers={"X-API-Key": key}), 401, "unauthorized")


async def test_delete_key_stops_it(make_user: UserFactory, key_client: httpx.AsyncClient) -> None:
    alice = await make_user()
    first = (await alice.client.post("/v1/api-keys", json={"name": "one"})).json()
    second = (await alice.client.post("/v1/api-keys", json={"name": "two"})).json()
    assert (await alice.client.delete(f"/v1/api-keys/{first['id']}")).status_code == 204
    assert [k["id"] for k in (await alice.client.get("/v1/api-keys")).json()] == [second["id"]]
    assert_error(await key_client.get("/_test/key-team", headers={"X-API-Key": first["key"]}), 401)
    assert (await key_client.get("/_test/key-team", headers={"X-API-Key": second["key"]})).status_code == 200
    assert_error(await alice.client.delete(f"/v1/api-keys/{first['id']}"), 404, "not_found")
    assert_error(await alice.client.delete("/v1/api-keys/not%20valid"), 400, "invalid_request", "id")


async def test_keys_of_another_team_are_invisible(make_user: UserFactory, key_client: httpx.AsyncClient) -> None:
    alice, mallory = await make_user(), await make_user()
    key = (await alice.client.post("/v1/api-keys", json={"name": "alice"})).json()
    assert (await mallory.client.get("/v1/api-keys")).json() == []
    stolen = await mallory.client.delete(f"/v1/api-keys/{key['id']}")
    missing = await mallory.client.delete("/v1/api-keys/key-000000000000")
    assert_error(stolen, 404, "not_found")
    assert stolen.json() == missing.json()
    assert (await key_client.get("/_test/key-team", headers={"X-API-Key": key["key"]})).status_code == 200


async def test_keys_follow_the_session_team(make_user: UserFactory, session_for: SessionFactory) -> None:
    owner = await make_user()
    member = await add_member(owner, make_user, session_for)
    shared = (await member.client.post("/v1/api-keys", json={"name": "shared"})).json()
    assert shared["team_id"] == owner.team_id
    assert [k["id"] for k in (await owner.client.get("/v1/api-keys")).json()] == [shared["id"]]
    assert (await member.user.client.get("/v1/api-keys")).json() == []  # their own team has none
    assert (await owner.client.delete(f"/v1/api-keys/{shared['id']}")).status_code == 204


async def test_key_writes_need_csrf_and_a_session(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    assert_error(await alice.client.post("/v1/api-keys", json={}, headers={"X-CSRF-Token": ""}), 403, "csrf_failed")
    key = (await alice.client.post("/v1/api-keys", json={})).json()
    assert_error(await alice.client.delete(f"/v1/api-keys/{key['id']}", headers={"X-CSRF-Token": "x"}), 403,
                 "csrf_failed")
    assert_error(await client.post("/v1/api-keys", json={}), 401, "unauthorized")
    assert_error(await client.get("/v1/api-keys"), 401, "unauthorized")
    assert len((await alice.client.get("/v1/api-keys")).json()) == 1
