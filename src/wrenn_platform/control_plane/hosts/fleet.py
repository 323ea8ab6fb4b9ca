"""Host status from heartbeats, and what a host's status means for its capsules.

    online ──(no heartbeat for host_offline_after_seconds)──▶ unreachable   (no new capsules)
    unreachable ──(no heartbeat for host_lost_after_seconds)──▶ offline     (its capsules → missing)
    unreachable / offline ──(heartbeat)──▶ online                          (reconciled again)

`draining` is set by an operator (`wrenn admin host drain`): the host keeps its capsules and its
heartbeats, but takes no new ones. `host.up` / `host.down` are derived from these status changes
(`events/derive.py`). Every statement is conditional on the status it leaves, so replicas running
this at the same time agree.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import record_audit
from ..db.models import Capsule, Host
from ..db.types import utcnow
from ..errors import conflict, not_found

# The error text of a record made `missing` because its host was lost: when the host returns
# without the capsule, such a record is `stopped` (the capsule is gone), not left missing.
HOST_LOST = "the host stopped reporting (offline)"
# Statuses of capsules that exist on a host and so go missing with it.
_ON_LOST_HOST = ("starting", "running", "pausing", "paused", "resuming")
# A host in these statuses is not asked about its capsules (its answers would undo `missing`).
SILENT = frozenset({"unreachable", "offline"})


async def mark_stale_hosts(db: AsyncSession, unreachable_after_s: float, offline_after_s: float) -> None:
    now = utcnow()
    await db.execute(update(Host).where(Host.status.in_(("online", "draining")),
                                        Host.last_heartbeat_at < now - timedelta(seconds=unreachable_after_s))
                     .values(status="unreachable"))
    lost_before = now - timedelta(seconds=offline_after_s)
    lost = list((await db.execute(select(Host.id).where(Host.status == "unreachable",
                                                        Host.last_heartbeat_at < lost_before))).scalars())
    if lost:
        await db.execute(update(Host).where(Host.id.in_(lost), Host.status == "unreachable")
                         .values(status="offline"))
        await db.execute(update(Capsule).where(Capsule.host_id.in_(lost), Capsule.status.in_(_ON_LOST_HOST))
                         .values(status="missing", error=HOST_LOST, last_updated=now))
    await db.commit()


async def heartbeat(db: AsyncSession, host_id: str) -> None:
    """A heartbeat: the host is online again, unless an operator is draining it."""
    now = utcnow()
    result = await db.execute(update(Host).where(Host.id == host_id, Host.status != "draining")
                              .values(last_heartbeat_at=now, status="online"))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await db.execute(update(Host).where(Host.id == host_id).values(last_heartbeat_at=now))
    await db.commit()


async def set_draining(db: AsyncSession, host_id: str, draining: bool) -> Host:
    """Start or stop draining a host; an undrained host is `online` until its heartbeats say otherwise."""
    host = await db.get(Host, host_id)
    if host is None:
        raise not_found(f"host {host_id} not found")
    if host.status == "pending":
        raise conflict(f"host {host_id} has not registered yet")
    before = host.status
    if draining:
        host.status = "draining"
    elif host.status == "draining":
        host.status = "online"
    if host.status != before:
        audit_host(db, host, "drain" if draining else "undrain")
    await db.commit()
    await db.refresh(host)
    return host


def audit_host(db: AsyncSession, host: Host, action: str, **metadata: str) -> None:
    """Host changes the ORM cannot tell apart (create and delete are derived: `events/derive.py`)."""
    record_audit(db, action=action, resource_type="host", resource_id=host.id, team_id=host.team_id,
                 scope="team" if host.team_id else "platform", metadata=metadata)
