"""Guest operations find a running capsule in memory (`capsules/running_cache.py`): a status change
made through this server is seen by its next request, one committed elsewhere within the bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from wrenn_platform.control_plane.capsules.running_cache import TTL_SECONDS, RunningCache, RunningCapsule
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.migrate import upgrade
from wrenn_platform.control_plane.db.models import Capsule
from wrenn_platform.control_plane.db.types import utcnow

from .conftest import wait_status


async def _exec(api: httpx.AsyncClient, capsule_id: str) -> httpx.Response:
    return await api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "true"})


async def test_pause_through_this_server_is_seen_by_the_next_exec(
    api: httpx.AsyncClient, capsules: Callable[..., Any]
) -> None:
    cap = await capsules()
    assert (await _exec(api, cap["id"])).status_code == 200
    assert (await _exec(api, cap["id"])).status_code == 200  # answered from memory
    assert (await api.post(f"/v1/capsules/{cap['id']}/pause")).status_code == 202
    refused = await _exec(api, cap["id"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict"
    await wait_status(api, cap["id"], "paused")


async def test_another_teams_key_gets_404_for_a_remembered_capsule(
    api: httpx.AsyncClient, other: httpx.AsyncClient, capsules: Callable[..., Any]
) -> None:
    cap = await capsules()
    assert (await _exec(api, cap["id"])).status_code == 200
    resp = await _exec(other, cap["id"])
    assert resp.status_code == 404, resp.text


async def test_writes_through_the_engine_invalidate_and_others_expire(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"
    here, elsewhere = make_engine(url), make_engine(url)
    try:
        await upgrade(here)
        cache = RunningCache(here)
        async with make_sessionmaker(here)() as db:
            capsule = Capsule(team_id="tm-a", host_id="hs-1", status="running")
            db.add(capsule)
            await db.commit()
        cache.remember(capsule, cache.generation)
        assert cache.get(capsule.id) == RunningCapsule("tm-a", "hs-1")

        # Columns the entry does not hold keep it; status, team or host through this engine end it.
        async with make_sessionmaker(here)() as db:
            await db.execute(update(Capsule).where(Capsule.id == capsule.id).values(last_active_at=utcnow()))
            await db.commit()
        assert cache.get(capsule.id) is not None
        async with make_sessionmaker(here)() as db:
            await db.execute(update(Capsule).where(Capsule.id == capsule.id).values(status="pausing"))
            await db.commit()
        assert cache.get(capsule.id) is None

        # A read that raced a commit is not stored; a flush that changes the host ends entries too.
        generation = cache.generation
        async with make_sessionmaker(here)() as db:
            row = await db.get(Capsule, capsule.id)
            assert row is not None
            row.status = "running"
            await db.commit()
        cache.remember(row, generation)
        assert cache.get(capsule.id) is None
        cache.remember(row, cache.generation)
        async with make_sessionmaker(here)() as db:
            row = await db.get(Capsule, capsule.id)
            assert row is not None
            row.host_id = "hs-2"
            await db.commit()
        assert cache.get(capsule.id) is None

        # Another replica's write (its own engine) is not seen: the entry lives out its lifetime.
        cache.remember(row, cache.generation)
        async with make_sessionmaker(elsewhere)() as db:
            await db.execute(update(Capsule).where(Capsule.id == capsule.id).values(status="paused"))
            await db.commit()
        assert cache.get(capsule.id) is not None
        await asyncio.sleep(TTL_SECONDS + 0.1)
        assert cache.get(capsule.id) is None
    finally:
        await here.dispose()
        await elsewhere.dispose()
