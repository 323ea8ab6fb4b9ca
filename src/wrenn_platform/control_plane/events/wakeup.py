"""Wake a loop whenever the relay announces new events on the bus (subscription kept alive)."""

from __future__ import annotations

import asyncio
import logging

from ..bus import Bus

log = logging.getLogger(__name__)
TOPIC = "events"


async def wake_on_publish(bus: Bus, wake: asyncio.Event) -> None:
    while True:
        try:
            async with bus.subscribe(TOPIC) as messages:
                async for _ in messages:
                    wake.set()
        except Exception:
            log.warning("event bus subscription lost; resubscribing", exc_info=True)
            await asyncio.sleep(1)
