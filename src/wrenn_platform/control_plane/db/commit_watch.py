"""Notice committed changes to chosen tables, whichever module makes them.

The in-memory caches (API keys, sessions, running capsules) follow one rule: an entry is served
only while the cache's generation is unchanged, and any committed change to what it caches bumps
the generation. A `CommitWatch` is that rule's database half: it marks a session dirty when a flush
deletes or modifies a watched row (only the named `columns`, if given) or a bulk UPDATE/DELETE
targets a watched table, and after that session commits it calls the callback attached for the
session's engine (one per app; engines without one are ignored). Writes tagged with
`TOUCH_OPTION` (last-used/last-seen stamps) change nothing anyone caches and are not counted.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import ORMExecuteState, Session

TOUCH_OPTION = "wrenn_session_touch"  # execution option: this write does not change who anyone is


class CommitWatch:
    def __init__(self, name: str, models: tuple[type, ...], columns: frozenset[str] | None = None) -> None:
        self._dirty_key = f"wrenn_dirty_{name}"
        self._models = models
        self._tables = frozenset(model.__tablename__ for model in models)  # type: ignore[attr-defined]
        self._columns = columns
        self._callbacks: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()
        event.listen(Session, "before_flush", self._mark_flushed_changes)
        event.listen(Session, "do_orm_execute", self._mark_bulk_changes)
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_rollback", self._after_rollback)

    def attach(self, engine: Engine, on_commit: Callable[[], None]) -> None:
        self._callbacks[engine] = on_commit

    def detach(self, engine: Engine) -> None:
        self._callbacks.pop(engine, None)

    def _modifies(self, obj: Any, session: Session) -> bool:
        if self._columns is None:
            return session.is_modified(obj)
        attrs = inspect(obj).attrs
        return any(attrs[name].history.has_changes() for name in self._columns)

    def _mark_flushed_changes(self, session: Session, _context: Any, _instances: Any) -> None:
        if any(isinstance(obj, self._models) for obj in session.deleted) or any(
            isinstance(obj, self._models) and self._modifies(obj, session) for obj in session.dirty
        ):
            session.info[self._dirty_key] = True

    def _sets_watched_columns(self, statement: Any) -> bool:
        values = getattr(statement, "_values", None)  # the SET clause; unknown (None): assume it does
        if self._columns is None or not values:
            return True
        return any(getattr(key, "key", key) in self._columns for key in values)

    def _mark_bulk_changes(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or state.execution_options.get(TOUCH_OPTION):
            return
        if getattr(getattr(state.statement, "table", None), "name", None) not in self._tables:
            return
        if state.is_delete or self._sets_watched_columns(state.statement):
            state.session.info[self._dirty_key] = True

    def _after_commit(self, session: Session) -> None:
        if not session.info.pop(self._dirty_key, False):
            return
        bind = session.bind  # None for sessions not bound to one engine: those belong to no app here
        engine = bind.engine if isinstance(bind, Connection) else bind
        callback = self._callbacks.get(engine) if engine is not None else None
        if callback is not None:
            callback()

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(self._dirty_key, None)
