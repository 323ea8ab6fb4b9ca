"""What a team's deletion does to its capsules (called by `teams_lifecycle.mark_team_deleted`)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Capsule
from ..db.types import utcnow
from .states import DESTROYABLE


async def stop_team_capsules(db: AsyncSession, team_id: str) -> None:
    """A deleted team's capsules go to `stopping` in the deleting transaction; the reconciler then
    destroys them on their hosts and records them `stopped`."""
    await db.execute(update(Capsule).where(Capsule.team_id == team_id, Capsule.status.in_(DESTROYABLE))
                     .values(status="stopping", last_updated=utcnow()))
