"""Placement: among online hosts this control plane can reach, the one with the most free memory
(then the fewest reserved vCPUs). Snapshot templates are pinned to the host that holds their files."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Capsule, Host
from ..db.types import utcnow
from ..errors import ApiError
from .states import ON_HOST


async def pick_host(db: AsyncSession, reachable: set[str], heartbeat_timeout_s: float,
                    pinned: str | None = None) -> str:
    fresh_since = utcnow() - timedelta(seconds=heartbeat_timeout_s)
    hosts = (await db.execute(select(Host).where(Host.status == "online", Host.last_heartbeat_at >= fresh_since))
             ).scalars().all()
    candidates = [h for h in hosts if h.id in reachable and (pinned is None or h.id == pinned)]
    if not candidates:
        what = f"host {pinned} holding this template" if pinned else "online host"
        raise ApiError(502, "no_host_available", f"no {what} is available")
    used = dict(
        (row[0], (int(row[1] or 0), int(row[2] or 0)))
        for row in (await db.execute(
            select(Capsule.host_id, func.sum(Capsule.memory_mb), func.sum(Capsule.vcpus))
            .where(Capsule.status.in_(ON_HOST), Capsule.host_id.in_([h.id for h in candidates]))
            .group_by(Capsule.host_id)
        )).all()
    )

    def free(host: Host) -> tuple[int, int]:
        mem, cpus = used.get(host.id, (0, 0))
        return (host.memory_mb or 0) - mem, -cpus

    return max(candidates, key=free).id
