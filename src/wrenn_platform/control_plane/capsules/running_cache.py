"""Which capsules are running, where, for whom: the guest operations' lookup without the database.

Only `running` capsules are remembered (any other status is read from the database, so its 409
is exact). The rule is `auth/key_cache.py`'s: an entry carries the generation taken before the
database was read, and any committed change to `capsules` made through this replica's engine
(ORM flush or bulk UPDATE/DELETE, from any module) that deletes a capsule or sets its status,
team or host bumps the generation in `after_commit`, so a pause, destroy or team deletion is
seen by this replica's next request. Changes committed by
another replica are seen after at most `TTL_SECONDS`; until then a guest operation reaches the
host agent, which refuses it for a capsule it does not have running (409 as well).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session

from ..db.models import Capsule

TTL_SECONDS = 2.0
_MAX_ENTRIES = 50_000
_DIRTY = "wrenn_capsules_dirty"
# What an entry holds: writes of other columns (last_active_at from the reconciler...) keep it.
_CACHED_COLUMNS = frozenset({"status", "team_id", "host_id"})
_caches: weakref.WeakKeyDictionary[Engine, RunningCache] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RunningCapsule:
    team_id: str
    host_id: str | None


class RunningCache:
    def __init__(self, engine: AsyncEngine | None) -> None:
        self.generation = 0
        self._entries: dict[str, tuple[RunningCapsule, int, float]] = {}
        if engine is not None:
            _caches[engine.sync_engine] = self

    def get(self, capsule_id: str) -> RunningCapsule | None:
        entry = self._entries.get(capsule_id)
        if entry is None:
            return None
        running, generation, expires = entry
        if generation != self.generation or expires <= time.monotonic():
            del self._entries[capsule_id]
            return None
        return running

    def put(self, capsule: Capsule, generation: int) -> None:
        """Remember a capsule read after `generation` was taken, if running and nothing committed since."""
        if capsule.status != "running" or generation != self.generation:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[capsule.id] = (RunningCapsule(capsule.team_id, capsule.host_id), generation,
                                     time.monotonic() + TTL_SECONDS)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()


def _changes_what_is_cached(obj: Capsule) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in _CACHED_COLUMNS)


@event.listens_for(Session, "before_flush")
def _mark_flushed_changes(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, Capsule):
            session.info[_DIRTY] = True
            return
    for obj in session.dirty:
        if isinstance(obj, Capsule) and _changes_what_is_cached(obj):
            session.info[_DIRTY] = True
            return


def _sets_what_is_cached(statement: Any) -> bool:
    values = getattr(statement, "_values", None)  # the SET clause; unknown (None): assume it does
    if not values:
        return True
    return any(getattr(key, "key", key) in _CACHED_COLUMNS for key in values)


@event.listens_for(Session, "do_orm_execute")
def _mark_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    if getattr(getattr(state.statement, "table", None), "name", None) != Capsule.__tablename__:
        return
    if state.is_delete or _sets_what_is_cached(state.statement):
        state.session.info[_DIRTY] = True


@event.listens_for(Session, "after_commit")
def _invalidate_after_commit(session: Session) -> None:
    if not session.info.pop(_DIRTY, False):
        return
    bind = session.bind
    engine = bind.engine if isinstance(bind, Connection) else bind
    cache = _caches.get(engine) if engine is not None else None
    if cache is not None:
        cache.invalidate()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_DIRTY, None)
