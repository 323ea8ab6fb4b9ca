"""Who is acting in the current request or task: a context variable read when events and audit
entries are written. Unset means the system (background work: reconciler, TTLs, relays).

Tasks started during a request inherit the request's context, so the background half of a
capsule action is still attributed to the caller who asked for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..auth.principal import Principal

ActorType = Literal["user", "api_key", "host", "system"]


@dataclass(frozen=True)
class Actor:
    type: ActorType
    id: str = ""
    name: str = ""


SYSTEM = Actor("system", "system", "system")
OPERATOR = Actor("system", "cli", "wrenn admin")  # an operator's command on the database
_current: ContextVar[Actor | None] = ContextVar("wrenn_actor", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


def from_principal(principal: Principal) -> Actor:
    kind: ActorType = "user" if principal.kind == "session" else "api_key"
    return Actor(kind, principal.actor_id, principal.actor_name)


def host_actor(host_id: str) -> Actor:
    return Actor("host", host_id, host_id)


def bind(actor: Actor | Principal) -> None:
    """Attribute what the rest of this request (and the tasks it starts) writes to `actor`."""
    _current.set(actor if isinstance(actor, Actor) else from_principal(actor))


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)
