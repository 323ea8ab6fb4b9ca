"""The in-process API-key cache: it answers repeated lookups, and deleting a key or its team ends
the key on the next request of the replica that did it, and over the bus on the others."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

from wrenn_platform.control_plane.auth.principal import Principal, require_key_or_session
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .conftest import running
from .helpers import Account, register, use_csrf


def _add_whoami(app: FastAPI) -> None:
    @app.get("/_test/identity/key")
    async def whoami(p: Principal = Depends(require_key_or_session)) -> dict[str, object]:
        return {"name": p.actor_name, "team_id": p.team_id}


async def _new_key(account: Account, name: str = "ci") -> dict[str, str]:
    response = await account.client.post("/v1/api-keys", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def _status(app: FastAPI, key: str) -> int:
    async with make_client(app, headers={"X-API-Key": key}) as client:
        return (await client.get("/_test/identity/key")).status_code


async def test_cache_answers_and_a_deleted_key_fails_on_the_next_request(app: FastAPI, settings: Settings) -> None:
    _add_whoami(app)
    account = await register(app, settings)
    created = await _new_key(account)
    async with make_client(app, headers={"X-API-Key": created["key"]}) as client:
        assert (await client.get("/_test/identity/key")).json()["name"] == "ci"
        # A write the cache cannot see (raw SQL) shows the cached entry is what answers...
        async with app.state.sessionmaker() as db:
            await db.execute(text("UPDATE api_keys SET name = 'renamed' WHERE id = :id"), {"id": created["id"]})
            await db.commit()
        assert (await client.get("/_test/identity/key")).json()["name"] == "ci"
        # ...and deleting the key through the API ends it at once.
        assert (await account.client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
        assert (await client.get("/_test/identity/key")).status_code == 401
    await account.client.aclose()


async def test_a_deleted_team_ends_its_keys_on_the_next_request(app: FastAPI, settings: Settings) -> None:
    _add_whoami(app)
    account = await register(app, settings)
    team_id = account.team_id
    created = await _new_key(account)
    assert await _status(app, created["key"]) == 200
    assert (await account.client.delete(f"/v1/teams/{team_id}")).status_code == 204
    assert await _status(app, created["key"]) == 401
    await account.client.aclose()


async def test_the_last_used_touch_keeps_the_entry(app: FastAPI, settings: Settings) -> None:
    _add_whoami(app)
    account = await register(app, settings)
    created = await _new_key(account)
    assert await _status(app, created["key"]) == 200  # first use: looked up, touched, cached
    generation = app.state.key_cache.generation
    assert await _status(app, created["key"]) == 200
    assert app.state.key_cache.generation == generation
    await account.client.aclose()


@pytest.mark.redis
async def test_deletion_reaches_other_replicas_over_the_bus(redis_settings: Settings) -> None:
    # A long lifetime, so only the bus message can end the key on the other replica in time.
    settings = redis_settings.model_copy(update={"api_key_cache_seconds": 3600})
    async with running(settings) as a, running(settings) as b:
        _add_whoami(a)
        _add_whoami(b)
        account = await register(a, settings)
        created = await _new_key(account)
        assert await _status(b, created["key"]) == 200
        assert await _status(b, created["key"]) == 200
        assert (await account.client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
        assert await _status(a, created["key"]) == 401
        for _ in range(100):
            if await _status(b, created["key"]) == 401:
                break
            await asyncio.sleep(0.02)
        assert await _status(b, created["key"]) == 401
        await account.client.aclose()


@pytest.mark.redis
async def test_a_removed_members_keys_end_on_other_replicas(redis_settings: Settings) -> None:
    settings = redis_settings.model_copy(update={"api_key_cache_seconds": 3600})
    async with running(settings) as a, running(settings) as b:
        _add_whoami(a)
        _add_whoami(b)
        owner, carol = await register(a, settings), await register(a, settings)
        added = await owner.client.post(f"/v1/teams/{owner.team_id}/members", json={"email": carol.email})
        assert added.status_code == 201, added.text
        switched = await carol.client.post("/v1/auth/switch-team", json={"team_id": owner.team_id})
        assert switched.status_code == 200, switched.text
        use_csrf(carol.client)  # the switch rotated the session and its CSRF cookie
        created = await _new_key(carol)
        assert created["team_id"] == owner.team_id
        assert await _status(b, created["key"]) == 200  # cached on replica b
        removed = await owner.client.delete(f"/v1/teams/{owner.team_id}/members/{carol.user_id}")
        assert removed.status_code == 204
        assert await _status(a, created["key"]) == 401
        for _ in range(100):
            if await _status(b, created["key"]) == 401:
                break
            await asyncio.sleep(0.02)
        assert await _status(b, created["key"]) == 401
        await owner.client.aclose()
        await carol.client.aclose()
