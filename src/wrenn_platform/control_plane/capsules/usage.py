"""Numbers for users: a sampler recording what each team has running, and the two reports built on
it — `/v1/capsules/stats` (current, 30-day peaks, a series) and `/v1/capsules/usage` (per day,
CPU minutes = reserved vCPUs * minutes running, RAM MB-minutes = reserved MB * minutes running)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wrenn_platform.wire.api.capsules import (
    CapsuleStats,
    StatsCurrent,
    StatsPeaks,
    StatsRange,
    StatsSeries,
    UsagePoint,
    UsageResponse,
)

from ..db.models import Capsule, UsageSample
from ..db.types import utcnow
from ..errors import bad_request
from ..events.wakeup import stop

log = logging.getLogger(__name__)

# range → (window, bucket)
_SERIES: dict[str, tuple[timedelta, timedelta]] = {
    "5m": (timedelta(minutes=5), timedelta(seconds=30)),
    "1h": (timedelta(hours=1), timedelta(minutes=1)),
    "6h": (timedelta(hours=6), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(minutes=15)),
    "30d": (timedelta(days=30), timedelta(hours=6)),
}
PEAK_WINDOW = timedelta(days=30)
MAX_USAGE_DAYS = 366


async def _running_by_team(db: AsyncSession, team_id: str | None = None) -> list[tuple[str, int, int, int]]:
    stmt = (select(Capsule.team_id, func.count(), func.sum(Capsule.vcpus), func.sum(Capsule.memory_mb))
            .where(Capsule.status == "running").group_by(Capsule.team_id))
    if team_id is not None:
        stmt = stmt.where(Capsule.team_id == team_id)
    return [(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in (await db.execute(stmt)).all()]


async def take_sample(sessionmaker: async_sessionmaker[AsyncSession], interval_s: int) -> int:
    """Record one sample per team with running capsules; the number of rows written."""
    async with sessionmaker() as db:
        now = utcnow()
        rows = await _running_by_team(db)
        db.add_all(UsageSample(team_id=team, sampled_at=now, interval_s=interval_s, running_count=n,
                               vcpus=cpus, memory_mb=mem) for team, n, cpus, mem in rows)
        await db.commit()
        return len(rows)


@asynccontextmanager
async def usage_sampler(app: FastAPI) -> AsyncIterator[None]:
    interval = max(1, int(app.state.settings.usage_sample_seconds))

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await take_sample(app.state.sessionmaker, interval)
            except Exception:
                log.exception("usage sample failed")

    task = asyncio.create_task(loop(), name="usage-sampler")
    try:
        yield
    finally:
        await stop([task])


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // bucket) * bucket


async def stats(db: AsyncSession, team_id: str, range_name: StatsRange) -> CapsuleStats:
    now = utcnow()
    current = await _running_by_team(db, team_id)
    _, running, cpus, mem = current[0] if current else (team_id, 0, 0, 0)
    peak = (await db.execute(
        select(func.max(UsageSample.running_count), func.max(UsageSample.vcpus), func.max(UsageSample.memory_mb))
        .where(UsageSample.team_id == team_id, UsageSample.sampled_at >= now - PEAK_WINDOW)
    )).one()
    window, bucket = _SERIES[range_name]
    start = _floor(now - window, bucket) + bucket
    samples = (await db.execute(
        select(UsageSample.sampled_at, UsageSample.running_count, UsageSample.vcpus, UsageSample.memory_mb)
        .where(UsageSample.team_id == team_id, UsageSample.sampled_at >= start)
    )).all()
    labels: list[datetime] = []
    moment = start
    while moment <= now:
        labels.append(moment)
        moment += bucket
    index = {label: i for i, label in enumerate(labels)}
    series = {"running": [0] * len(labels), "vcpus": [0] * len(labels), "memory_mb": [0] * len(labels)}
    for at, n, c, m in samples:
        i = index.get(_floor(at, bucket))
        if i is None:
            continue
        series["running"][i] = max(series["running"][i], n)
        series["vcpus"][i] = max(series["vcpus"][i], c)
        series["memory_mb"][i] = max(series["memory_mb"][i], m)
    return CapsuleStats(
        range=range_name,
        current=StatsCurrent(running_count=running, vcpus_reserved=cpus, memory_mb_reserved=mem, sampled_at=now),
        peaks=StatsPeaks(running_count=max(int(peak[0] or 0), running), vcpus=max(int(peak[1] or 0), cpus),
                         memory_mb=max(int(peak[2] or 0), mem)),
        series=StatsSeries(labels=labels, **series),
    )


async def daily_usage(db: AsyncSession, team_id: str, from_: date | None, to: date | None) -> UsageResponse:
    today = utcnow().date()
    to = to or today
    from_ = from_ or (to - timedelta(days=30))
    if from_ > to:
        raise bad_request("from must not be after to")
    if (to - from_).days > MAX_USAGE_DAYS:
        raise bad_request(f"at most {MAX_USAGE_DAYS} days per request")
    start = datetime(from_.year, from_.month, from_.day, tzinfo=UTC)
    end = datetime(to.year, to.month, to.day, tzinfo=UTC) + timedelta(days=1)
    rows = (await db.execute(
        select(UsageSample.sampled_at, UsageSample.interval_s, UsageSample.vcpus, UsageSample.memory_mb)
        .where(UsageSample.team_id == team_id, UsageSample.sampled_at >= start, UsageSample.sampled_at < end)
    )).all()
    days: dict[date, list[float]] = {}
    for at, interval_s, cpus, mem in rows:
        minutes = interval_s / 60.0
        acc = days.setdefault(at.date(), [0.0, 0.0])
        acc[0] += cpus * minutes
        acc[1] += mem * minutes
    points = []
    day = from_
    while day <= to:
        cpu, ram = days.get(day, [0.0, 0.0])
        points.append(UsagePoint(date=day, cpu_minutes=round(cpu, 3), ram_mb_minutes=round(ram, 3)))
        day += timedelta(days=1)
    return UsageResponse(from_=from_, to=to, points=points)
