"""The Redis session cache, the bus and the shared login limits, against the real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from fastapi import Depends, FastAPI
from redis.asyncio import Redis
from sqlalchemy import text, update

from wrenn_platform.control_plane.auth.principal import Principal, require_session
from wrenn_platform.control_plane.auth.session_cache import INVALIDATED_TOPIC, SessionCache
from wrenn_platform.control_plane.bus import InProcessBus, RedisBus
from wrenn_platform.control_plane.db.models import AuthSession, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import sha256_hex
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client
from .conftest import running
from .helpers import PASSWORD, register

pytestmark = pytest.mark.redis


def _add_whoami(app: FastAPI) -> None:
    @app.get("/_test/identity/principal")
    async def principal(p: Principal = Depends(require_session)) -> dict[str, object]:
        return {"name": p.actor_name, "is_admin": p.is_admin, "team_id": p.team_id}


async def test_cache_serves_lookups_and_revocation_wins_across_replicas(redis_settings: Settings) -> None:
    async with running(redis_settings) as a, running(redis_settings) as b:
        _add_whoami(a)
        account = await register(a, a.state.settings, name="Cached")
        client = account.client
        assert (await client.get("/_test/identity/principal")).json()["name"] == "Cached"
        redis: Redis = a.state.redis
        sid_hash = sha256_hex(client.cookies["wrenn_sid"])
        assert await redis.exists(f"{redis_settings.redis_prefix}session:{sid_hash}")

        # A write the cache cannot see (raw SQL) shows the entry is what answers...
        async with a.state.sessionmaker() as db:
            await db.execute(text("UPDATE users SET name = 'Renamed' WHERE id = :id"), {"id": account.user_id})
            await db.commit()
        assert (await client.get("/_test/identity/principal")).json()["name"] == "Cached"

        # ...and logout-all on another replica ends the session on this one at once.
        async with make_client(b) as other:
            login = await other.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
            assert login.status_code == 200
            other.headers["X-CSRF-Token"] = other.cookies["wrenn_csrf"]
            assert (await other.post("/v1/auth/logout-all")).status_code == 204
        assert (await client.get("/_test/identity/principal")).status_code == 401
        await client.aclose()


async def test_writes_elsewhere_invalidate_the_cache(redis_settings: Settings) -> None:
    """Admin routes flip flags through the ORM without calling identity code: still immediate."""
    async with running(redis_settings) as app:
        _add_whoami(app)
        account = await register(app, app.state.settings)
        client = account.client
        assert (await client.get("/_test/identity/principal")).json()["is_admin"] is False
        async with app.state.sessionmaker() as db:
            user = await db.get(User, account.user_id)
            assert user is not None
            user.is_admin = True
            await db.commit()
        assert (await client.get("/_test/identity/principal")).json()["is_admin"] is True
        async with app.state.sessionmaker() as db:
            user = await db.get(User, account.user_id)
            assert user is not None
            user.is_active = False
            await db.commit()
        assert (await client.get("/_test/identity/principal")).status_code == 401
        await client.aclose()

        # A bulk UPDATE (how team removal revokes sessions) is seen too.
        second = await register(app, app.state.settings)
        assert (await second.client.get("/_test/identity/principal")).status_code == 200
        async with app.state.sessionmaker() as db:
            await db.execute(
                update(AuthSession).where(AuthSession.user_id == second.user_id).values(revoked_at=utcnow())
            )
            await db.commit()
        assert (await second.client.get("/_test/identity/principal")).status_code == 401
        await second.client.aclose()


async def test_stale_entry_from_a_racing_lookup_is_not_served(redis_settings: Settings) -> None:
    async with running(redis_settings) as app:
        account = await register(app, app.state.settings)
        cache: SessionCache = app.state.session_cache
        sid_hash = sha256_hex(account.client.cookies["wrenn_sid"])
        assert (await account.client.get("/v1/me")).status_code == 200
        snapshot, generation = await cache.get(sid_hash)
        assert snapshot is not None
        # A lookup read the DB (generation seen), then a revocation bumped it, then the lookup writes.
        await cache.invalidate()
        await cache.put(sid_hash, snapshot, generation)
        stale, _ = await cache.get(sid_hash)
        assert stale is None
        await account.client.aclose()


async def test_login_limits_are_shared_by_replicas(redis_settings: Settings) -> None:
    limit = redis_settings.login_attempts_per_minute
    async with running(redis_settings) as a, running(redis_settings) as b:
        account = await register(a, a.state.settings)
        async with make_client(a) as ca, make_client(b) as cb:
            for i in range(limit):
                client = ca if i % 2 else cb
                failed = await client.post("/v1/auth/login", json={"email": account.email, "password": "wrong!"})
                assert failed.status_code == 401
            for client in (ca, cb):
                blocked = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
                assert blocked.status_code == 429
                assert int(blocked.headers["Retry-After"]) >= 1
        ttl = await a.state.redis.ttl(f"{redis_settings.redis_prefix}ratelimit:login:email:{account.email}")
        assert 0 < ttl <= 60
        await account.client.aclose()


async def test_redis_bus_crosses_replicas(redis_settings: Settings) -> None:
    async with running(redis_settings) as a, running(redis_settings) as b:
        assert isinstance(a.state.bus, RedisBus) and isinstance(b.state.bus, RedisBus)
        async with b.state.bus.subscribe("test.topic") as messages, b.state.bus.subscribe("other") as others:
            await a.state.bus.publish("test.topic", {"n": 1})
            await a.state.bus.publish("test.topic", {"n": 2})
            received = [await asyncio.wait_for(anext(messages), 5) for _ in range(2)]
            assert received == [{"n": 1}, {"n": 2}]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(others), 0.3)

        # Session invalidations are announced on the bus, to every replica.
        async with b.state.bus.subscribe(INVALIDATED_TOPIC) as events:
            account = await register(a, a.state.settings)
            assert (await account.client.post("/v1/auth/logout-all")).status_code == 204
            event = await asyncio.wait_for(anext(events), 5)
            assert event == {"user_id": account.user_id, "revoked": 1}
            await account.client.aclose()


async def test_bus_prefix_isolates_deployments(redis_settings: Settings) -> None:
    other = redis_settings.model_copy(update={"redis_prefix": f"wrenn-test-{secrets.token_hex(6)}:"})
    async with running(redis_settings) as a, running(other) as b, b.state.bus.subscribe("t") as messages:
        await a.state.bus.publish("t", {"from": "a"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(messages), 0.3)


async def test_in_process_bus() -> None:
    bus = InProcessBus()
    await bus.publish("nobody", {"x": 1})  # no subscriber: dropped
    async with bus.subscribe("t") as first, bus.subscribe("t") as second:
        await bus.publish("t", {"x": 2})
        assert await anext(first) == {"x": 2} and await anext(second) == {"x": 2}
    await bus.publish("t", {"x": 3})  # unsubscribed: nothing is kept


async def test_without_redis_there_is_no_cache(app: FastAPI) -> None:
    assert app.state.redis is None and app.state.session_cache is None
    assert isinstance(app.state.bus, InProcessBus)
