"""A team's placement tags: host tags its new capsules require.

The API contract has no field to ask for host tags (a capsule request's body is fixed), so the
choice is the platform's, per team: an admin gives a team tags (`wrenn admin team-placement`) and
the scheduler then places that team's new capsules only on hosts carrying every one of them —
dedicated machines for a customer, a region, hardware. A team without tags may use any host.
Capsules already placed stay where they are; a paused capsule resumes where its snapshot is.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.api.hosts_admin import TAG_PATTERN

from ..audit import record_audit
from ..db.models import HostTag, Team, TeamPlacementTag
from ..errors import bad_request, not_found


async def required_tags(db: AsyncSession, team_id: str) -> list[str]:
    rows = await db.execute(select(TeamPlacementTag.tag).where(TeamPlacementTag.team_id == team_id)
                            .order_by(TeamPlacementTag.tag))
    return list(rows.scalars().all())


async def hosts_with_tags(db: AsyncSession, host_ids: list[str], tags: list[str]) -> set[str]:
    """The hosts among `host_ids` that carry every one of `tags`."""
    rows = (await db.execute(select(HostTag.host_id, HostTag.tag).where(HostTag.host_id.in_(host_ids),
                                                                        HostTag.tag.in_(tags)))).all()
    have: dict[str, set[str]] = {}
    for host_id, tag in rows:
        have.setdefault(host_id, set()).add(tag)
    return {host_id for host_id, found in have.items() if found >= set(tags)}


async def set_required_tags(db: AsyncSession, team_id: str, tags: list[str]) -> list[str]:
    """Replace the team's placement tags (an empty list: any host); commits."""
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise not_found(f"team {team_id} not found")
    for tag in tags:
        if not re.fullmatch(TAG_PATTERN, tag):
            raise bad_request(f"tag {tag!r}: 1-64 characters: letters, digits, '.', '_', ':', '=', '-'")
    before, after = await required_tags(db, team_id), sorted(set(tags))
    if before == after:
        return after
    await db.execute(delete(TeamPlacementTag).where(TeamPlacementTag.team_id == team_id))
    db.add_all(TeamPlacementTag(team_id=team_id, tag=tag) for tag in after)
    # One entry for the change (the rows are replaced wholesale, so none is derived from them).
    record_audit(db, action="placement.update", resource_type="team", resource_id=team_id, team_id=team_id,
                 scope="team", metadata={"tags": after, "previous": before})
    await db.commit()
    return after
