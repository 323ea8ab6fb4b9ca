"""E2B's `timeout` on the capsule lifecycle.

E2B's timeout is an absolute lifetime: at its end the sandbox is killed, or paused when it was
created with `autoPause`. Wrenn's own `timeout_sec` is different (an inactivity auto-pause), so an
E2B sandbox is created with `timeout_sec` 0 and its end kept in `Capsule.ends_at` / `on_end`; the
loop here acts on running capsules whose end has passed, through the capsule service as any
caller would (a destroy, or a pause). A pause clears `ends_at`: a paused sandbox has no lifetime,
the next connect gives it a new one. The same service also waits for a lifecycle change to settle,
since E2B's API answers once the sandbox is in its new state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select, update

from ..capsules.service import CapsuleService
from ..db.models import Capsule
from ..db.types import utcnow
from ..errors import ApiError
from ..events.wakeup import stop

log = logging.getLogger(__name__)

_SWEEP_S = 1.0
_POLL_S = 0.05
TRANSIENT = frozenset({"pending", "starting", "pausing", "resuming", "stopping"})


def end_after(seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


async def wait_settled(capsules: CapsuleService, capsule_id: str, timeout_s: float) -> Capsule:
    """The capsule's record once it has left every transient status (504 after `timeout_s`), read
    from the database, so a change driven by another replica is waited for too. Unlike
    `CapsuleService.settled` (the Wrenn API's short, configurable wait, after which it answers the
    transient status), E2B's API answers only with the outcome."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with capsules.sessionmaker() as db:
            capsule = await db.get(Capsule, capsule_id)
        if capsule is None:
            raise ApiError(404, "not_found", f"sandbox {capsule_id} not found")
        if capsule.status not in TRANSIENT:
            return capsule
        if time.monotonic() >= deadline:
            raise ApiError(504, "gateway_timeout", f"sandbox {capsule_id} is still {capsule.status} "
                           f"after {timeout_s:g} s")
        await asyncio.sleep(_POLL_S)


async def end_expired(capsules: CapsuleService) -> int:
    """Destroy or pause every running capsule whose `ends_at` has passed; how many were acted on."""
    acted = 0
    async with capsules.sessionmaker() as db:
        rows = await db.execute(select(Capsule).where(Capsule.ends_at <= utcnow(), Capsule.status == "running"))
        for capsule in rows.scalars().all():
            try:
                if capsule.on_end == "pause":
                    await capsules.pause(db, capsule)
                    await db.execute(update(Capsule).where(Capsule.id == capsule.id).values(ends_at=None))
                    await db.commit()
                else:
                    await capsules.destroy(db, capsule)
                acted += 1
                log.info("capsule %s reached its end of life: %s", capsule.id, capsule.on_end)
            except ApiError as exc:  # moved on meanwhile (a 409), or its host is gone (a 502)
                log.warning("ending capsule %s (%s) failed: %s", capsule.id, capsule.on_end, exc.message)
    return acted


@asynccontextmanager
async def lifetime_loop(app: FastAPI) -> AsyncIterator[None]:
    capsules: CapsuleService = app.state.capsules

    async def loop() -> None:
        while True:
            try:
                await end_expired(capsules)
            except Exception:
                log.exception("ending expired capsules failed")
            await asyncio.sleep(_SWEEP_S)

    task = asyncio.create_task(loop(), name="capsule-lifetime")
    try:
        yield
    finally:
        await stop([task])
