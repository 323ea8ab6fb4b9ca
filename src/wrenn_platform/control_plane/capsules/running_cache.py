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

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.commit_watch import CommitWatch
from ..db.models import Capsule
from ..generation_cache import GenerationCache

TTL_SECONDS = 2.0
# Create-time metadata that makes the port proxy require an API key of the capsule's team.
PROXY_AUTH_LABEL = "wrenn.proxy_auth"
PROXY_AUTH_API_KEY = "api_key"
_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class RunningCapsule:
    team_id: str
    host_id: str | None
    proxy_key_required: bool = False  # the port proxy's opt-in (`proxy/gate.py`); fixed at create


class RunningCache(GenerationCache[str, RunningCapsule]):
    def __init__(self, engine: AsyncEngine | None) -> None:
        super().__init__(TTL_SECONDS, _MAX_ENTRIES)
        if engine is not None:
            _watch.attach(engine.sync_engine, self.invalidate)

    def remember(self, capsule: Capsule, generation: int) -> None:
        """Remember a capsule read after `generation` was taken, if running and nothing committed since."""
        if capsule.status == "running":
            self.put(capsule.id, running_view(capsule), generation)


def running_view(capsule: Capsule) -> RunningCapsule:
    labels = capsule.labels or {}
    return RunningCapsule(capsule.team_id, capsule.host_id, labels.get(PROXY_AUTH_LABEL) == PROXY_AUTH_API_KEY)


# What an entry holds: writes of other columns (last_active_at from the reconciler...) keep it.
_watch = CommitWatch("capsules", (Capsule,), columns=frozenset({"status", "team_id", "host_id"}))
