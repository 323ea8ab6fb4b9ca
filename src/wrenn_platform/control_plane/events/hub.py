"""Each replica's SSE hub: reads published events once and fans them out to its stream clients.

The hub wakes on the bus (`events` topic) or every `events_poll_seconds`, reads the events after
the last number it has seen, and puts each into the queue of every client allowed to see it. A
client's queue is bounded: a client that falls behind is cut off (its stream ends; it reconnects
with `Last-Event-ID` and catches up from the table) and never slows the hub or other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..bus import Bus
from ..db.models import Event
from .wakeup import follow_events, stop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    seq: int
    team_id: str | None
    text: str  # the SSE frame, ready to send


def frame(row: Event) -> Frame:
    data = json.dumps(row.payload, separators=(",", ":"))
    assert row.seq is not None
    return Frame(row.seq, row.team_id, f"id: {row.seq}\nevent: {row.event}\ndata: {data}\n\n")


@dataclass(eq=False)
class Subscriber:
    team_id: str | None  # None: every team (the admin stream)
    queue: asyncio.Queue[Frame | None] = field(default_factory=asyncio.Queue)

    def wants(self, item: Frame) -> bool:
        return self.team_id is None or item.team_id == self.team_id


class Hub:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], queue_size: int) -> None:
        self._sessionmaker = sessionmaker
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self.last_seq = 0

    def subscribe(self, team_id: str | None) -> Subscriber:
        subscriber = Subscriber(team_id, asyncio.Queue(self._queue_size))
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def start(self) -> None:
        async with self._sessionmaker() as db:
            self.last_seq = (await db.scalar(select(func.max(Event.seq)))) or 0

    async def catch_up(self) -> None:
        while True:
            async with self._sessionmaker() as db:
                rows = (await db.scalars(select(Event).where(Event.seq > self.last_seq)
                                         .order_by(Event.seq).limit(1000))).all()
            for row in rows:
                self._fan_out(frame(row))
            if len(rows) < 1000:
                return

    def _fan_out(self, item: Frame) -> None:
        self.last_seq = item.seq
        for subscriber in list(self._subscribers):
            if not subscriber.wants(item):
                continue
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._cut_off(subscriber)

    def _cut_off(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)


@contextlib.asynccontextmanager
async def hub_service(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    hub = Hub(app.state.sessionmaker, settings.events_client_queue)
    await hub.start()
    app.state.event_hub = hub
    bus: Bus = app.state.bus
    tasks = follow_events(bus, settings.events_poll_seconds, hub.catch_up, "event-hub", "event hub read")
    try:
        yield
    finally:
        await stop(tasks)
