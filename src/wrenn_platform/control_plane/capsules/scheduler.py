"""Placement: which host gets a new capsule.

Eligible: `online` hosts (not `draining`, `unreachable`, `offline`, `pending`) with a fresh
heartbeat that this control plane reaches and whose free memory fits the capsule. A BYOC host
serves only its own team, and only while that team has BYOC enabled; regular hosts serve every
team. A BYOC team's capsules go to its own hosts while one fits, else to regular hosts. A team with
placement tags (`hosts/placement.py`) uses only hosts carrying all of them. Among the eligible, the
most free memory wins (then the fewest reserved vCPUs); hosts in `prefer` (those holding a warm
capsule of the request, `warm_pool.py`) come before the others. Snapshot templates are pinned to the host
that holds their files.

Every refusal is 502 `no_host_available`, its message naming what was missing (a host at all, one
with the team's tags, one with the memory free).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Capsule, Host, Team
from ..db.types import utcnow
from ..errors import ApiError
from ..hosts import placement
from .states import ON_HOST


async def pick_host(db: AsyncSession, reachable: set[str], heartbeat_timeout_s: float, *, team_id: str,
                    memory_mb: int = 0, pinned: str | None = None, prefer: set[str] | None = None) -> str:
    fresh_since = utcnow() - timedelta(seconds=heartbeat_timeout_s)
    hosts = (await db.execute(select(Host).where(Host.status == "online", Host.last_heartbeat_at >= fresh_since))
             ).scalars().all()
    byoc_team = bool((await db.execute(select(Team.is_byoc).where(Team.id == team_id))).scalar_one_or_none())
    candidates = [h for h in hosts if h.id in reachable and (pinned is None or h.id == pinned)
                  and (h.type != "byoc" or (byoc_team and h.team_id == team_id))]
    if not candidates:
        what = f"host {pinned} holding this template" if pinned else "online host"
        raise ApiError(502, "no_host_available", f"no {what} is available")
    tags = await placement.required_tags(db, team_id)
    if tags:
        tagged = await placement.hosts_with_tags(db, [h.id for h in candidates], tags)
        candidates = [h for h in candidates if h.id in tagged]
        if not candidates:
            raise ApiError(502, "no_host_available",
                           f"no online host carries the tags this team's capsules require: {', '.join(tags)}")
    used = dict(
        (row[0], (int(row[1] or 0), int(row[2] or 0)))
        for row in (await db.execute(
            select(Capsule.host_id, func.sum(Capsule.memory_mb), func.sum(Capsule.vcpus))
            .where(Capsule.status.in_(ON_HOST), Capsule.host_id.in_([h.id for h in candidates]))
            .group_by(Capsule.host_id)
        )).all()
    )

    def free_memory(host: Host) -> int | None:
        """None: the host did not report its memory (not limited by this check)."""
        return None if not host.memory_mb else host.memory_mb - used.get(host.id, (0, 0))[0]

    fitting = [h for h in candidates if (free := free_memory(h)) is None or free >= memory_mb]
    if not fitting:
        raise ApiError(502, "no_host_available", f"no host has {memory_mb} MB of memory free")
    own = [h for h in fitting if h.type == "byoc"]

    def rank(host: Host) -> tuple[bool, int, int]:
        free = free_memory(host)
        return host.id in (prefer or ()), (free if free is not None else 0), -used.get(host.id, (0, 0))[1]

    return max(own or fitting, key=rank).id
