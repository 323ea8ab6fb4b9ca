"""The relay: publishes outbox rows once, in commit order, whatever the number of replicas.

Each pass takes the unpublished rows in id order and numbers them (`seq`) after the highest number
given so far, in one transaction. On PostgreSQL the pass holds a transaction-level advisory lock,
so replicas number one after another and numbers are gap-free and in commit order; on SQLite the
database's single writer does the same (a conflicting pass fails on the unique `seq` and retries).
The same transaction queues the channel deliveries of each event. After commit the relay tells
every replica's hub on the bus (`events` topic) that there is more to read; hubs also poll, so a
lost bus message delays an event by at most `events_poll_seconds`.

The relay, hub and dispatcher start early (30-32) so that they stop after the capsule workers:
what those commit while stopping is still published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..bus import Bus
from ..db.models import Channel, ChannelDelivery, Event
from ..db.types import utcnow
from . import retention
from .record import add_waker, remove_waker
from .wakeup import TOPIC, stop, wait_for_wake

log = logging.getLogger(__name__)

BATCH = 500
_LOCK_KEY = 0x7772656E6E  # "wrenn": the advisory lock of the relay


async def publish_pending(sessionmaker: async_sessionmaker[AsyncSession], bus: Bus) -> int:
    """Number and queue one batch of unpublished events; how many there were.

    Each row is numbered only if it is still unnumbered (a conditional UPDATE) and numbers are
    unique, so a pass that raced another one (SQLite runs each SELECT on its own snapshot) fails
    as a whole and the next pass starts over: no event is numbered twice and none is skipped.
    """
    async with sessionmaker() as db:
        if db.get_bind().dialect.name == "postgresql":
            await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        rows = (await db.execute(select(Event.id, Event.team_id, Event.event).where(Event.seq.is_(None))
                                 .order_by(Event.id).limit(BATCH))).all()
        if not rows:
            return 0
        top = (await db.scalar(select(func.max(Event.seq)))) or 0
        now = utcnow()
        for offset, row in enumerate(rows, start=1):
            numbered = await db.execute(update(Event).where(Event.id == row.id, Event.seq.is_(None))
                                        .values(seq=top + offset, published_at=now)
                                        .execution_options(synchronize_session=False))
            if numbered.rowcount != 1:  # type: ignore[attr-defined]
                await db.rollback()
                raise RelayConflict("another relay published some of these events")
        team_ids = {row.team_id for row in rows if row.team_id}
        channels = (await db.scalars(select(Channel).where(Channel.team_id.in_(team_ids)))).all() if team_ids else []
        for row in rows:
            for channel in channels:
                if channel.team_id == row.team_id and row.event in (channel.events or []):
                    db.add(ChannelDelivery(channel_id=channel.id, event_id=row.id, next_attempt_at=now))
        await db.commit()
        last = top + len(rows)
    await bus.publish(TOPIC, {"seq": last})
    return len(rows)


class RelayConflict(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def relay_service(app: FastAPI) -> AsyncIterator[None]:
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    def waker() -> None:
        loop.call_soon_threadsafe(wake.set)

    async def run() -> None:
        poll = app.state.settings.events_poll_seconds
        pruned_at = 0.0
        while True:
            await wait_for_wake(wake, poll)
            if loop.time() - pruned_at > retention.INTERVAL_S:
                pruned_at = loop.time()
                try:
                    await retention.prune(app.state.sessionmaker, app.state.settings)
                except Exception:
                    log.warning("event pruning failed", exc_info=True)
            try:
                while await publish_pending(app.state.sessionmaker, app.state.bus) == BATCH:
                    pass
            except (RelayConflict, IntegrityError, OperationalError):
                await asyncio.sleep(0.05)  # another relay got there first (or held the database): go again
                wake.set()
            except Exception:  # e.g. a lost connection: the next pass retries
                log.warning("event relay pass failed", exc_info=True)

    add_waker(waker)
    task = asyncio.create_task(run(), name="event-relay")
    try:
        yield
    finally:
        remove_waker(waker)
        await stop([task])
        with contextlib.suppress(Exception):  # what committed during shutdown
            await publish_pending(app.state.sessionmaker, app.state.bus)
