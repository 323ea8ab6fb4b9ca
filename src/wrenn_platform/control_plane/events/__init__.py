"""Events: what happened to a team's capsules, templates and hosts, live (SSE) and to channels.

Public API for the rest of the control plane:

- `record_event(db, *, team_id, event, resource_id, resource_type, outcome=None, error=None,
  metadata=None, sandbox=None, actor=None)` adds an event to the outbox table in the caller's
  session; it is published only if that transaction commits, exactly once, to every replica.
- `audit.record_audit(db, *, action, resource_type, resource_id, team_id, scope=None,
  status="success", metadata=None, actor=None)`: the audit log's counterpart, same transaction.
- `audit.actor.bind(principal_or_actor)`: attribute what the rest of the request (and the tasks it
  starts) writes to that caller; `require_session`/`require_key_or_session` and `require_host` do
  it. Unbound work (reconciler, TTLs) is the system's. `acting_as(actor)` scopes it to a block.

Most events and audit entries need no call at all: `derive.py` derives them from the database
changes (capsule status transitions, snapshot templates, host status, team/key/member/user/session
changes) in the same transaction. Call `record_event`/`record_audit` only for what cannot be
derived from a row change.

Delivery: `relay.py` numbers committed events (`seq`, the SSE id) and queues channel deliveries;
`hub.py` fans them out to this replica's SSE clients (`sse.py`); `channels/dispatcher.py`
delivers to notification channels; `retention.py` prunes. The hooks are installed by
`hooks.install_orm_hooks()`, which `db.engine.make_sessionmaker` calls, so every process that
writes through the ORM records its events.
"""

from __future__ import annotations

from ..audit.actor import Actor, acting_as, bind, current_actor
from .record import record_event

__all__ = ["Actor", "acting_as", "bind", "current_actor", "record_event"]
