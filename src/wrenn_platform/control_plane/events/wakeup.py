"""Wake a loop whenever the relay announces new events on the bus (subscription kept alive)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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


async def wait_for_wake(wake: asyncio.Event, within: float) -> None:
    """Return when `wake` is set or after `within` seconds, and clear it.

    Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await wake.wait()
    wake.clear()


async def run_on_wake(wake: asyncio.Event, within: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `work` whenever woken, and at least every `within` seconds; a failed pass is logged."""
    while True:
        await wait_for_wake(wake, within)
        try:
            await work()
        except Exception:
            log.warning("%s failed", what, exc_info=True)


def follow_events(bus: Bus, within: float, work: Callable[[], Awaitable[object]], name: str,
                  what: str) -> list[asyncio.Task[None]]:
    """Run `work` whenever the relay announces new events, and at least every `within` seconds:
    the two tasks doing it (`name-bus` listening, `name` working), to hand to `stop()`."""
    wake = asyncio.Event()
    return [asyncio.create_task(wake_on_publish(bus, wake), name=f"{name}-bus"),
            asyncio.create_task(run_on_wake(wake, within, work, what), name=name)]


async def stop(tasks: list[asyncio.Task[None]], within: float = 10.0) -> None:
    """Cancel background loops and wait for them, bounded: shutting down never hangs on one."""
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=within)
    for task in stuck:
        log.error("background task %s did not stop within %.0f s", task.get_name(), within)
