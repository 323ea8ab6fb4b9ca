"""One SSE stream: the `connected` sentinel, the events missed since `Last-Event-ID` (bounded by
count and age), then live events from the hub, with a `: keepalive` comment when idle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.models import Event
from ..db.types import utcnow
from ..settings import Settings
from .hub import Frame, Hub, frame
from .names import CONNECTED

KEEPALIVE = ": keepalive\n\n"


def connected_frame() -> str:
    data = {"event": CONNECTED, "timestamp": utcnow().isoformat().replace("+00:00", "Z")}
    return f"event: {CONNECTED}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


async def missed(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, team_id: str | None,
                 after: int) -> list[Frame]:
    """The newest `events_replay_limit` events after `after`, no older than the replay window."""
    since = utcnow() - timedelta(seconds=settings.events_replay_window_seconds)
    query = select(Event).where(Event.seq > after, Event.created_at >= since)
    if team_id is not None:
        query = query.where(Event.team_id == team_id)
    async with sessionmaker() as db:
        rows = (await db.scalars(query.order_by(Event.seq.desc()).limit(settings.events_replay_limit))).all()
    return [frame(row) for row in reversed(rows)]


# How stale the caller's authorization may be before it is checked again (revoked session or key,
# removed member, demoted admin): the stream ends at the first failed check.
AUTH_RECHECK_SECONDS = 1.0


async def stream(hub: Hub, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings,
                 team_id: str | None, last_event_id: int | None,
                 authorized: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
    subscriber = hub.subscribe(team_id)  # before the replay query, so nothing falls in between
    checked_at = time.monotonic()

    async def still_authorized() -> bool:
        nonlocal checked_at
        if time.monotonic() - checked_at < AUTH_RECHECK_SECONDS:
            return True
        checked_at = time.monotonic()
        return await authorized()

    try:
        yield connected_frame()
        last = 0
        if last_event_id is not None:
            for replayed in await missed(sessionmaker, settings, team_id, last_event_id):
                last = replayed.seq
                yield replayed.text
        while True:
            item: Frame | None
            try:
                async with asyncio.timeout(settings.events_keepalive_seconds):
                    item = await subscriber.queue.get()
            except TimeoutError:
                if not await still_authorized():
                    return
                yield KEEPALIVE
                continue
            if item is None:
                return  # fell behind: the client reconnects with Last-Event-ID
            if item.seq <= last:
                continue
            if not await still_authorized():
                return
            last = item.seq
            yield item.text
    finally:
        hub.unsubscribe(subscriber)
