"""Autonomous capsule events (auto-pause, crash, clean-up after restart) and who hears them.

The agent publishes; subscribers are async iterators (the in-process client, the `/v1/events`
WebSocket) and plain callbacks. The newest `BACKLOG` events are kept so a subscriber that connects
late (the control plane after an agent restart) or reconnects with `after=<last seq>` misses
nothing. Sequence numbers start at the process's start time in milliseconds, so they keep
increasing across agent restarts and an `after` from a previous process still works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable

from wrenn_platform.wire.agent import SandboxEvent

log = logging.getLogger(__name__)

BACKLOG = 1000
SUBSCRIBER_QUEUE = 1000

EventCallback = Callable[[SandboxEvent], None]


class EventBus:
    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self._seq = int(time.time() * 1000)
        self._backlog: deque[SandboxEvent] = deque(maxlen=BACKLOG)
        self._queues: set[asyncio.Queue[SandboxEvent]] = set()
        self._callbacks: list[EventCallback] = []

    def publish(self, event: str, capsule_id: str, reason: str = "") -> SandboxEvent:
        self._seq += 1
        ev = SandboxEvent(
            event=event, sandbox_id=capsule_id, host_id=self.host_id,
            timestamp=int(time.time()), seq=self._seq, reason=reason,
        )
        log.info("event %s %s %s", event, capsule_id, reason)
        self._backlog.append(ev)
        for q in list(self._queues):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a stalled subscriber loses its oldest-but-not-yet-read tail
                log.warning("event subscriber too slow; dropping %s", ev.seq)
        for cb in list(self._callbacks):
            try:
                cb(ev)
            except Exception:
                log.exception("event callback failed")
        return ev

    def add_callback(self, cb: EventCallback) -> Callable[[], None]:
        self._callbacks.append(cb)
        return lambda: self._callbacks.remove(cb)

    def backlog(self, after: int | None = None) -> list[SandboxEvent]:
        return [e for e in self._backlog if after is None or e.seq > after]

    async def subscribe(self, after: int | None = None) -> AsyncGenerator[SandboxEvent, None]:
        """Events after `after` (None: only new ones; 0: the whole backlog), then live ones."""
        q: asyncio.Queue[SandboxEvent] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._queues.add(q)  # before reading the backlog, so nothing falls between the two
        try:
            last = after or 0
            if after is not None:
                for ev in self.backlog(after):
                    last = ev.seq
                    yield ev
            while True:
                ev = await q.get()
                if ev.seq > last:
                    last = ev.seq
                    yield ev
        finally:
            self._queues.discard(q)
