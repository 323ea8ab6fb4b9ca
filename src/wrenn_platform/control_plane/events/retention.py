"""What is kept: published events for the replay window (and while a channel delivery still needs
them; the newest one always, so numbering continues), finished channel deliveries for 30 days.
The audit log is never pruned."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.models import ChannelDelivery, Event
from ..db.types import utcnow
from ..settings import Settings

DELIVERIES_KEPT = timedelta(days=30)
INTERVAL_S = 300.0


async def prune(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    now = utcnow()
    async with sessionmaker() as db:
        await db.execute(delete(ChannelDelivery).where(ChannelDelivery.status != "pending",
                                                       ChannelDelivery.created_at < now - DELIVERIES_KEPT))
        newest = await db.scalar(select(func.max(Event.seq)))
        if newest is not None:
            needed = select(ChannelDelivery.event_id).where(ChannelDelivery.status == "pending")
            await db.execute(delete(Event).where(
                Event.seq.is_not(None), Event.seq < newest,
                Event.created_at < now - timedelta(seconds=settings.events_replay_window_seconds),
                Event.id.not_in(needed)))
        await db.commit()
