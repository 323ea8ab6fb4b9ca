"""In-process cache of API-key lookups: the hot path (exec) skips the database for the caller.

Same rule as `session_cache.py`: an entry is stored with the cache *generation* read before the
database was consulted and is served only while the generation is unchanged. Any committed change
to `api_keys` or `teams` (key deleted, team deleted, renamed...), whichever module makes it, bumps
the generation synchronously in SQLAlchemy's `after_commit`, so it holds on this replica's very
next request. The bump is published on the bus (`INVALIDATED_TOPIC`) for the other replicas, which
bump theirs on receipt; the bus is at-most-once, so every entry also expires after
`api_key_cache_seconds`, the bound for a replica that missed the message. `last_used` touches are
tagged with `TOUCH_OPTION` and do not bump it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import ORMExecuteState, Session

from .. import bus as _bus  # noqa: F401  (registers the bus service, which provides app.state.bus)
from ..db.models import ApiKey, Team
from ..services import service
from .session_cache import TOUCH_OPTION

INVALIDATED_TOPIC = "identity.api_keys.invalidated"
_WATCHED_TABLES = frozenset({ApiKey.__tablename__, Team.__tablename__})
_DIRTY = "wrenn_api_keys_dirty"
_MAX_ENTRIES = 10_000
_caches: weakref.WeakKeyDictionary[Engine, KeyCache] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class KeySnapshot:
    """What a request needs of an API key (its team is live: a deleted team's keys are not cached)."""

    api_key_id: str
    team_id: str
    created_by: str | None
    name: str
    last_used: datetime | None


class KeyCache:
    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self.generation = 0
        self._entries: dict[str, tuple[KeySnapshot, int, float]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.publish: Any = None  # async (topic, payload) -> None once the service runs

    def get(self, key_hash: str) -> KeySnapshot | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        snapshot, generation, expires = entry
        if generation != self.generation or expires <= time.monotonic():
            del self._entries[key_hash]
            return None
        return snapshot

    def put(self, key_hash: str, snapshot: KeySnapshot, generation: int) -> None:
        """Store a snapshot read after `generation` was taken, unless a change committed since."""
        if generation != self.generation or self._ttl <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key_hash] = (snapshot, generation, time.monotonic() + self._ttl)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

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


def _engine_cache(session: Session) -> KeyCache | None:
    bind = session.bind  # None for sessions not bound to one engine: those belong to no app here
    engine = bind.engine if isinstance(bind, Connection) else bind
    return _caches.get(engine) if engine is not None else None


@event.listens_for(Session, "before_flush")
def _mark_flushed_changes(session: Session, _context: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, ApiKey | Team) and (obj in session.deleted or session.is_modified(obj)):
            session.info[_DIRTY] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _mark_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete) or state.execution_options.get(TOUCH_OPTION):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _WATCHED_TABLES:
        state.session.info[_DIRTY] = True


@event.listens_for(Session, "after_commit")
def _invalidate_after_commit(session: Session) -> None:
    if session.info.pop(_DIRTY, False):
        cache = _engine_cache(session)
        if cache is not None:
            cache.invalidate_everywhere()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)


async def _listen(cache: KeyCache, app: FastAPI, subscribed: asyncio.Event) -> None:
    async with app.state.bus.subscribe(INVALIDATED_TOPIC) as messages:
        subscribed.set()
        async for _ in messages:
            cache.invalidate()


@service(17)
@asynccontextmanager
async def key_cache_service(app: FastAPI) -> AsyncIterator[None]:
    cache = KeyCache(app.state.settings.api_key_cache_seconds)
    app.state.key_cache = cache
    _caches[app.state.engine.sync_engine] = cache
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
        _caches.pop(app.state.engine.sync_engine, None)
