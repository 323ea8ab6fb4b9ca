"""Team limits against a real server and real capsules: creates racing for a team's last place
get exactly one capsule; a snapshot over the team's limit is refused; a capsule destroyed gives its
place back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from wrenn_platform.control_plane import team_limits
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.settings import Settings

from .conftest import Env, destroy, wait_status


async def _limits(env: Env, **changes: int | None) -> team_limits.Use:
    engine = make_engine(env.database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            await team_limits.set_team_limits(db, env.a.team_id, changes, Settings())
            return await team_limits.team_use(db, env.a.team_id)
    finally:
        await engine.dispose()


@pytest.fixture
async def limited(env: Env) -> AsyncIterator[None]:
    yield
    await _limits(env, max_capsules=None, max_snapshots=None)  # back to the defaults for the other tests


async def test_racing_creates_get_exactly_the_last_place(env: Env, api: httpx.AsyncClient, shared_capsule: str,
                                                         limited: None) -> None:
    use = await _limits(env)
    await _limits(env, max_capsules=use.capsules + 1)
    answers = await asyncio.gather(*(api.post("/v1/capsules", json={}) for _ in range(4)))
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code == 403]
    assert len(accepted) == 1 and len(refused) == 3, [(r.status_code, r.text) for r in answers]
    for response in refused:
        assert response.json()["error"]["code"] == "limit_exceeded"
        assert f"max_capsules is {use.capsules + 1}" in response.json()["error"]["message"]
    capsule_id = accepted[0].json()["id"]
    await wait_status(api, capsule_id, "running")
    await destroy(api, capsule_id)  # its place comes back
    again = await api.post("/v1/capsules", json={})
    assert again.status_code == 202, again.text
    await wait_status(api, again.json()["id"], "running")
    await destroy(api, again.json()["id"])


async def test_snapshots_over_the_limit_are_refused(env: Env, api: httpx.AsyncClient, shared_capsule: str,
                                                    limited: None) -> None:
    made = await api.post("/v1/snapshots", json={"sandbox_id": shared_capsule})
    assert made.status_code == 201, made.text
    use = await _limits(env)
    await _limits(env, max_snapshots=use.snapshots)  # at least the one just made: the team is at its limit
    try:
        refused = await api.post("/v1/snapshots", json={"sandbox_id": shared_capsule})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "limit_exceeded" and f"max_snapshots is {use.snapshots}" in error["message"]
        listed = (await api.get("/v1/snapshots", params={"type": "snapshot"})).json()
        assert len(listed) == use.snapshots  # nothing was reserved
    finally:
        assert (await api.delete(f"/v1/snapshots/{made.json()['name']}")).status_code == 204
