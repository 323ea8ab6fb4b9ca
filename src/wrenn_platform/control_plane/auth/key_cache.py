"""In-process cache of API-key lookups: the hot path (exec) skips the database for the caller.

Same rule as `session_cache.py`: an entry is stored with the cache *generation* read before the
database was consulted and is served only while the generation is unchanged. Any committed change
to `api_keys`, `teams` or `team_limits` (key deleted, team deleted, limit changed...), whichever module makes it, bumps
the generation synchronously in SQLAlchemy's `after_commit`, so it holds on this replica's very
next request. The bump is published on the bus (`INVALIDATED_TOPIC`) for the other replicas, which
bump theirs on receipt; the bus is at-most-once, so every entry also expires after
`api_key_cache_seconds`, the bound for a replica that missed the message. `last_used` touches are
tagged with `TOUCH_OPTION` and do not bump it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI

from ..db.commit_watch import CommitWatch
from ..db.models import ApiKey, Team, TeamLimit
from ..generation_cache import GenerationCache

INVALIDATED_TOPIC = "identity.api_keys.invalidated"
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class KeySnapshot:
    """What a request needs of an API key (its team is live: a deleted team's keys are not cached)."""

    api_key_id: str
    team_id: str
    created_by: str | None
    name: str
    last_used: datetime | None
    requests_per_second: int | None  # the team's own limit (`team_limits`); None: the platform default


class KeyCache(GenerationCache[str, KeySnapshot]):
    def __init__(self, ttl_seconds: float) -> None:
        super().__init__(ttl_seconds, _MAX_ENTRIES)
        self._pending: set[asyncio.Task[None]] = set()
        self.publish: Any = None  # async (topic, payload) -> None once the service runs

    def invalidate_everywhere(self) -> None:
        self.invalidate()
        if self.publish is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to tell
            task = asyncio.get_running_loop().create_task(self.publish(INVALIDATED_TOPIC, {}))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


_watch = CommitWatch("api_keys", (ApiKey, Team, TeamLimit))


async def _listen(cache: KeyCache, app: FastAPI, subscribed: asyncio.Event) -> None:
    async with app.state.bus.subscribe(INVALIDATED_TOPIC) as messages:
        subscribed.set()
        async for _ in messages:
            cache.invalidate()


@asynccontextmanager
async def key_cache_service(app: FastAPI) -> AsyncIterator[None]:
    cache = KeyCache(app.state.settings.api_key_cache_seconds)
    app.state.key_cache = cache
    _watch.attach(app.state.engine.sync_engine, cache.invalidate_everywhere)
    subscribed = asyncio.Event()
    listener = asyncio.create_task(_listen(cache, app, subscribed), name="api-key-cache-invalidations")
    waiter = asyncio.create_task(subscribed.wait())
    await asyncio.wait({listener, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if listener.done():
        listener.result()  # the subscription failed: surface it
    cache.publish = app.state.bus.publish
    try:
        yield
    finally:
        cache.publish = None
        await cache.settle()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        _watch.detach(app.state.engine.sync_engine)
