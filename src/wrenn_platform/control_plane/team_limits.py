"""Team limits: how much of the platform one team may hold, so that no team starves the others.

Per team: capsules on hosts at once (running, paused or in transition), their vCPUs, memory and
disk together, snapshot templates, and requests per second per API key. Each limit is the
platform default (settings `team_max_*`, `api_key_requests_per_second`; 0 = no limit) unless an
admin gave the team its own (`wrenn admin team-limits`, table `team_limits`).

A new capsule or snapshot is checked against the team's use inside the transaction that records
it, with the team's row locked (`SELECT ... FOR UPDATE` on PostgreSQL, so replicas take turns) and,
in this process, the team's lock held (SQLite has no row locks; its one writer is the embedded
server): two creates racing for the last place cannot both pass. Over a limit: 403
`limit_exceeded`, the message naming the limit, its value and the current use.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .audit import record_audit
from .capsules import states
from .db.models import Capsule, Team, TeamLimit, Template
from .errors import ApiError, not_found
from .settings import Settings


@dataclass(frozen=True)
class Limits:
    max_capsules: int
    max_vcpus: int
    max_memory_mb: int
    max_disk_mb: int
    max_snapshots: int
    api_key_requests_per_second: int


NAMES = tuple(f.name for f in fields(Limits))
# The setting that holds each limit's platform default.
DEFAULT_SETTING = {
    "max_capsules": "team_max_capsules",
    "max_vcpus": "team_max_vcpus",
    "max_memory_mb": "team_max_memory_mb",
    "max_disk_mb": "team_max_disk_mb",
    "max_snapshots": "team_max_snapshots",
    "api_key_requests_per_second": "api_key_requests_per_second",
}


@dataclass(frozen=True)
class Use:
    capsules: int
    vcpus: int
    memory_mb: int
    disk_mb: int
    snapshots: int


def resolve(row: TeamLimit | None, settings: Settings) -> Limits:
    """The team's own values where set, the platform defaults elsewhere."""
    values: dict[str, Any] = {}
    for name in NAMES:
        own = getattr(row, name) if row is not None else None
        values[name] = own if own is not None else getattr(settings, DEFAULT_SETTING[name])
    return Limits(**values)


async def team_limits(db: AsyncSession, team_id: str, settings: Settings) -> Limits:
    return resolve(await db.get(TeamLimit, team_id), settings)


async def team_use(db: AsyncSession, team_id: str) -> Use:
    capsules, vcpus, memory, disk = (await db.execute(
        select(func.count(), func.coalesce(func.sum(Capsule.vcpus), 0), func.coalesce(func.sum(Capsule.memory_mb), 0),
               func.coalesce(func.sum(Capsule.disk_size_mb), 0))
        .where(Capsule.team_id == team_id, Capsule.status.in_(states.ON_HOST))
    )).one()
    snapshots = await db.scalar(select(func.count()).select_from(Template).where(Template.team_id == team_id))
    return Use(int(capsules), int(vcpus), int(memory), int(disk), int(snapshots or 0))


def _refuse(name: str, limit: int, used: int, adding: int, unit: str = "") -> ApiError:
    return ApiError(403, "limit_exceeded",
                    f"team limit {name} is {limit}{unit}, {used}{unit} in use: {adding}{unit} more would pass it",
                    {"limit": name, "value": limit, "used": used})


async def _lock_team(db: AsyncSession, team_id: str) -> None:
    await db.execute(select(Team.id).where(Team.id == team_id).with_for_update())


async def check_new_capsule(db: AsyncSession, team_id: str, settings: Settings, *, vcpus: int, memory_mb: int,
                            disk_mb: int) -> None:
    """Call in the transaction that adds the capsule, under the team's process lock; raises 403."""
    await _lock_team(db, team_id)
    limits, use = await team_limits(db, team_id, settings), await team_use(db, team_id)
    for name, limit, used, adding, unit in (
        ("max_capsules", limits.max_capsules, use.capsules, 1, ""),
        ("max_vcpus", limits.max_vcpus, use.vcpus, vcpus, ""),
        ("max_memory_mb", limits.max_memory_mb, use.memory_mb, memory_mb, " MB"),
        ("max_disk_mb", limits.max_disk_mb, use.disk_mb, disk_mb, " MB"),
    ):
        if limit and used + adding > limit:
            raise _refuse(name, limit, used, adding, unit)


async def check_new_snapshot(db: AsyncSession, team_id: str, settings: Settings) -> None:
    """Call in the transaction that adds the snapshot's record, under the team's process lock."""
    await _lock_team(db, team_id)
    limit = (await team_limits(db, team_id, settings)).max_snapshots
    used = (await team_use(db, team_id)).snapshots
    if limit and used + 1 > limit:
        raise _refuse("max_snapshots", limit, used, 1)


async def set_team_limits(db: AsyncSession, team_id: str, changes: dict[str, int | None],
                          settings: Settings) -> Limits:
    """Set (a number, 0 = no limit) or clear (None: the platform default) some of a team's limits;
    audited as `limits.update`; commits."""
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise not_found(f"team {team_id} not found")
    unknown = set(changes) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
    row = await db.get(TeamLimit, team_id)
    before = resolve(row, settings)
    if row is None:
        row = TeamLimit(team_id=team_id)
        db.add(row)
    for name, value in changes.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 (no limit) or more")
        setattr(row, name, value)
    after = resolve(row, settings)
    if after != before:
        record_audit(db, action="limits.update", resource_type="team", resource_id=team_id, team_id=team_id,
                     scope="team", metadata={"limits": after.__dict__, "previous": before.__dict__})
    await db.commit()
    return after
