"""The build worker: claims the oldest queued build (conditional UPDATE, so one replica wins) and
runs it; woken at once by a submit in this process, else polls for other replicas' submits. Before
each claim it fails running builds whose lease ran out (their worker died) and destroys their
capsules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..capsules import states
from ..capsules.service import CapsuleService
from ..db.models import Capsule, TemplateBuild
from ..db.types import utcnow
from ..events.wakeup import stop
from .runner import LEASE, BuildRunner

log = logging.getLogger(__name__)


class BuildWorker:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], capsules: CapsuleService,
                 poll_s: float) -> None:
        self.sessionmaker = sessionmaker
        self.capsules = capsules
        self.poll_s = poll_s
        self.wakeup = asyncio.Event()

    async def claim(self) -> TemplateBuild | None:
        async with self.sessionmaker() as db:
            build_id = await db.scalar(select(TemplateBuild.id).where(TemplateBuild.status == "queued")
                                       .order_by(TemplateBuild.created_at, TemplateBuild.id).limit(1))
            if build_id is None:
                return None
            now = utcnow()
            result = await db.execute(update(TemplateBuild).where(TemplateBuild.id == build_id,
                                                                  TemplateBuild.status == "queued")
                                      .values(status="running", started_at=now, lease_until=now + LEASE))
            await db.commit()
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another replica (or a cancel) got there first
            return await db.get(TemplateBuild, build_id)

    async def reap(self) -> None:
        """Fail the running builds whose worker stopped renewing their lease, and destroy their capsules."""
        async with self.sessionmaker() as db:
            now = utcnow()
            lost = (await db.execute(select(TemplateBuild).where(TemplateBuild.status == "running",
                                                                 TemplateBuild.lease_until < now))).scalars().all()
            for build in lost:
                result = await db.execute(
                    update(TemplateBuild).where(TemplateBuild.id == build.id, TemplateBuild.status == "running",
                                                TemplateBuild.lease_until < now)
                    .values(status="failed", finished_at=now, error="interrupted: its worker stopped",
                            logs=TemplateBuild.logs + "# failed: interrupted, its worker stopped\n"))
                await db.commit()
                if not result.rowcount or build.capsule_id is None:  # type: ignore[attr-defined]
                    continue
                capsule = await db.get(Capsule, build.capsule_id)
                if capsule is not None and capsule.status in states.DESTROYABLE:
                    with contextlib.suppress(Exception):
                        await self.capsules.destroy(db, capsule)

    async def loop(self) -> None:
        while True:
            try:
                await self.reap()
                build = await self.claim()
            except Exception:
                log.exception("claiming a build failed")
                build = None
            if build is not None:
                await BuildRunner(self.sessionmaker, self.capsules, build).run()
                continue
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.poll_s)


@asynccontextmanager
async def build_worker(app: FastAPI) -> AsyncIterator[None]:
    worker = BuildWorker(app.state.sessionmaker, app.state.capsules, app.state.settings.build_poll_seconds)
    app.state.builds = worker
    task = asyncio.create_task(worker.loop(), name="template-builds")
    try:
        yield
    finally:
        await stop([task])
