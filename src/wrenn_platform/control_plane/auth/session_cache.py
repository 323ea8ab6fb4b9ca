"""Redis cache in front of the session lookup, shared by replicas; absent without Redis.

Correctness over hit rate: every cached entry carries the cache *generation* read in the same
round trip as the entry, before the database is consulted; any change to `users` or
`auth_sessions` (revocation, deactivation, admin flag, rename...) bumps the generation, so an
entry written by a lookup that raced the change is never served. The bump happens explicitly in
`sessions.py` and, for writes made anywhere else, from SQLAlchemy events after the commit (awaited
by the next lookup in this process). `last_seen_at` touches are tagged so they do not bump it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from ..db.commit_watch import CommitWatch
from ..db.models import AuthSession, User

INVALIDATED_TOPIC = "identity.sessions.invalidated"


@dataclass(frozen=True)
class SessionSnapshot:
    """What a request needs of a session and its user (the role is always read fresh)."""

    session_id: str
    user_id: str
    team_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked: bool
    user_active: bool
    user_deleted: bool
    is_admin: bool
    actor_name: str

    def to_json(self, generation: int) -> str:
        data: dict[str, Any] = asdict(self)
        for key in ("created_at", "last_seen_at", "expires_at"):
            data[key] = data[key].isoformat()
        data["generation"] = generation
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> tuple[SessionSnapshot, int]:
        data = json.loads(raw)
        generation = int(data.pop("generation"))
        for key in ("created_at", "last_seen_at", "expires_at"):
            data[key] = datetime.fromisoformat(data[key])
        return cls(**data), generation


class SessionCache:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._generation_key = f"{prefix}session-generation"
        self._pending: set[asyncio.Task[None]] = set()

    def _entry_key(self, sid_hash: str) -> str:
        return f"{self._prefix}session:{sid_hash}"

    async def get(self, sid_hash: str) -> tuple[SessionSnapshot | None, int]:
        """The cached snapshot if current, and the generation to store a fresh one with."""
        await self.settle()
        raw, generation_raw = await self._redis.mget([self._entry_key(sid_hash), self._generation_key])
        generation = int(generation_raw or 0)
        if raw is None:
            return None, generation
        snapshot, stored = SessionSnapshot.from_json(str(raw))
        return (snapshot if stored == generation else None), generation

    async def put(self, sid_hash: str, snapshot: SessionSnapshot, generation: int) -> None:
        await self._redis.set(self._entry_key(sid_hash), snapshot.to_json(generation), ex=self._ttl)

    async def drop(self, sid_hash: str) -> None:
        await self._redis.delete(self._entry_key(sid_hash))

    async def invalidate(self) -> None:
        await self._redis.incr(self._generation_key)

    def invalidate_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.invalidate())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for invalidations scheduled by commits in this process."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


_watch = CommitWatch("sessions", (User, AuthSession))


@asynccontextmanager
async def session_cache_service(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    redis: Redis | None = app.state.redis
    if redis is None:
        app.state.session_cache = None
        yield
        return
    cache = SessionCache(redis, settings.redis_prefix, settings.session_cache_seconds)
    app.state.session_cache = cache
    _watch.attach(app.state.engine.sync_engine, cache.invalidate_soon)
    try:
        yield
    finally:
        await cache.settle()
        _watch.detach(app.state.engine.sync_engine)
