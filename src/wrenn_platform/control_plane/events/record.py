"""`record_event`: add an event to the outbox in the caller's transaction (published after commit)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..audit.actor import Actor, current_actor
from ..db.models import Event
from ..db.types import utcnow
from .names import ACTION_EVENTS

_PENDING = "wrenn_events_pending"
# Relays of this process, woken when a transaction with new events commits (they also poll).
_wakers: set[Callable[[], None]] = set()


def sse_actor(actor: Actor) -> dict[str, str]:
    """The contract's SSE actor types are user | api_key | system; a host acts as the system."""
    kind = actor.type if actor.type in ("user", "api_key") else "system"
    return {"type": kind, "id": actor.id, "name": actor.name}


def record_event(
    db: AsyncSession | Session,
    *,
    team_id: str | None,
    event: str,
    resource_id: str,
    resource_type: str,
    outcome: str | None = None,
    error: str | None = None,
    metadata: Mapping[str, str] | None = None,
    sandbox: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> Event:
    if event in ACTION_EVENTS and outcome not in ("success", "error"):
        raise ValueError(f"{event} needs outcome success or error")
    now = utcnow()
    payload: dict[str, Any] = {
        "event": event,
        "resource": {"id": resource_id, "type": resource_type},
        "actor": sse_actor(actor or current_actor()),
        "metadata": {k: str(v) for k, v in (metadata or {}).items()},
        "timestamp": now.isoformat().replace("+00:00", "Z"),
    }
    if outcome is not None:
        payload["outcome"] = outcome
    if outcome == "error":
        payload["error"] = error or "unknown error"
    if event.startswith("capsule."):
        payload["sandbox"] = sandbox
    row = Event(team_id=team_id, event=event, payload=payload, created_at=now)
    db.add(row)
    db.info[_PENDING] = True
    return row


def add_waker(waker: Callable[[], None]) -> None:
    _wakers.add(waker)


def remove_waker(waker: Callable[[], None]) -> None:
    _wakers.discard(waker)


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        for waker in list(_wakers):
            waker()


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
