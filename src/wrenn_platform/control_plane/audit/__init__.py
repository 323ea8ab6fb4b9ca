"""The audit log: who changed what, written in the transaction of the change.

`record_audit(db, action=, resource_type=, resource_id=, team_id=, status=, metadata=)` adds an
entry to the session; the actor comes from `actor.py` (bound per request). Most entries are
written automatically by `events/derive.py` from the ORM changes themselves; call `record_audit`
only where the meaning cannot be derived (e.g. a failed call, a test notification). Entries are
append-only (`guard.py`, installed by `events.hooks.install_orm_hooks`, plus database triggers). Pages: `pages.py`.
"""

from __future__ import annotations

from .record import record_audit

__all__ = ["record_audit"]
