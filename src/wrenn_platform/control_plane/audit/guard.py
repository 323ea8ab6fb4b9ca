"""The audit log is append-only: the ORM refuses to update or delete an entry (the database
triggers of migration 0004 refuse it for every other client too)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from ..db.models import AuditLog


class AppendOnlyError(RuntimeError):
    pass


def _no_changes(session: Session, _context: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditLog) and (obj in session.deleted or session.is_modified(obj)):
            raise AppendOnlyError("audit log entries cannot be changed or deleted")


def _no_bulk_changes(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(m.class_ is AuditLog for m in state.all_mappers):
        raise AppendOnlyError("audit log entries cannot be changed or deleted")


def install() -> None:
    """Refuse changes to audit entries in every ORM session (idempotent)."""
    for name, hook in (("before_flush", _no_changes), ("do_orm_execute", _no_bulk_changes)):
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)
