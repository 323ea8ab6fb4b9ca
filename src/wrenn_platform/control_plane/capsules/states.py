"""The capsule state machine: which statuses each operation accepts. Anything else is a 409."""

from __future__ import annotations

from ..db.models import Capsule
from ..errors import conflict

RUNNING = frozenset({"running"})
PAUSABLE = RUNNING
RESUMABLE = frozenset({"paused"})
# Destroy waits for an in-flight create/pause/resume on the same capsule, so it is accepted then too.
DESTROYABLE = frozenset({"pending", "starting", "running", "pausing", "paused", "resuming", "hibernated",
                         "missing", "error"})
# Each lifecycle action's transient status, and the status it ends in when it succeeds.
ACTIONS = {"starting": "create", "pausing": "pause", "resuming": "resume", "stopping": "destroy"}
TARGETS = {"starting": "running", "pausing": "paused", "resuming": "running", "stopping": "stopped"}
GOING = frozenset({"stopping", "stopped"})  # a destroy of these changes nothing (idempotent)
# Statuses that hold resources on a host (counted by scheduling, stats and usage).
ON_HOST = frozenset({"starting", "running", "pausing", "paused", "resuming", "stopping"})
NO_METRICS = frozenset({"starting", "stopped", "missing"})  # nothing on a host to measure


def require(capsule: Capsule, allowed: frozenset[str], doing: str) -> None:
    if capsule.status not in allowed:
        wanted = " or ".join(sorted(allowed)) if len(allowed) < 3 else "in a state that allows it"
        raise conflict(f"cannot {doing} capsule {capsule.id}: it is {capsule.status}, not {wanted}")
