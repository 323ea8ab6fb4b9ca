"""Team limits at the API (both databases): a capsule over a team's capsules, vCPUs, memory or disk
is refused 403 `limit_exceeded` naming the limit, its value and the use; defaults come from the
settings, a team's own values from `wrenn admin team-limits`; an API key past its requests per
second gets 429. On PostgreSQL two replicas' checks take turns on the team's row."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner

from wrenn_platform.cli.main import app as cli
from wrenn_platform.control_plane import team_limits
from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import AuditLog, Capsule
from wrenn_platform.control_plane.settings import Settings

from .conftest import LoggedInUser, UserFactory, make_client


async def _on_host(app: FastAPI, team_id: str, *, vcpus: int = 1, memory_mb: int = 512, disk_mb: int = 1024,
                   status: str = "running") -> None:
    """A capsule record holding resources on a host (no host is needed to count it)."""
    async with app.state.sessionmaker() as db:
        db.add(Capsule(team_id=team_id, host_id="host-none", status=status, vcpus=vcpus, memory_mb=memory_mb,
                       disk_size_mb=disk_mb))
        await db.commit()


async def _set(app: FastAPI, team_id: str, **changes: int | None) -> None:
    async with app.state.sessionmaker() as db:
        await team_limits.set_team_limits(db, team_id, changes, app.state.settings)


def _refused(response: httpx.Response, limit: str, value: int, used: int) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert (error["limit"], error["value"], error["used"]) == (limit, value, used)
    assert limit in error["message"] and str(value) in error["message"], error


def _passed_the_limits(response: httpx.Response) -> None:
    # no host in these tests: a request within the limits goes on to placement and finds none
    assert response.status_code == 502 and response.json()["error"]["code"] == "no_host_available", response.text


async def test_each_capsule_limit_refuses_with_value_and_use(app: FastAPI, make_user: UserFactory) -> None:
    user: LoggedInUser = await make_user()
    await _on_host(app, user.team_id, vcpus=2, memory_mb=1024, disk_mb=2048)
    await _on_host(app, user.team_id, status="paused")  # a paused capsule still holds its place
    await _on_host(app, user.team_id, status="stopped", vcpus=50)  # a destroyed one holds nothing
    body = {"template": "minimal", "vcpus": 2, "memory_mb": 512, "disk_size_mb": 1024}
    _passed_the_limits(await user.client.post("/v1/capsules", json=body))

    await _set(app, user.team_id, max_capsules=2)
    _refused(await user.client.post("/v1/capsules", json=body), "max_capsules", 2, 2)
    await _set(app, user.team_id, max_capsules=0, max_vcpus=4)  # 0: no limit
    _refused(await user.client.post("/v1/capsules", json=body), "max_vcpus", 4, 3)
    _passed_the_limits(await user.client.post("/v1/capsules", json={**body, "vcpus": 1}))
    await _set(app, user.team_id, max_vcpus=None, max_memory_mb=2000)
    _refused(await user.client.post("/v1/capsules", json=body), "max_memory_mb", 2000, 1536)
    await _set(app, user.team_id, max_memory_mb=None, max_disk_mb=3000)
    _refused(await user.client.post("/v1/capsules", json=body), "max_disk_mb", 3000, 3072)
    await _set(app, user.team_id, max_disk_mb=None)
    _passed_the_limits(await user.client.post("/v1/capsules", json=body))
    # another team's use counts for nobody else
    other = await make_user()
    await _set(app, other.team_id, max_capsules=1)
    _passed_the_limits(await other.client.post("/v1/capsules", json=body))
    async with app.state.sessionmaker() as db:
        changes = (await db.scalars(select(AuditLog).where(AuditLog.team_id == user.team_id,
                                                            AuditLog.action == "limits.update"))).all()
    assert len(changes) == 5 and changes[0].metadata_["limits"]["max_capsules"] == 2


async def test_platform_defaults_come_from_the_settings(settings: Settings) -> None:
    tight = settings.model_copy(update={"team_max_capsules": 1})
    application = create_app(tight)
    async with application.router.lifespan_context(application):
        team_id, key = await _team_with_key(application)
        async with make_client(application, headers={"X-API-Key": key}) as client:
            _passed_the_limits(await client.post("/v1/capsules", json={}))
            await _on_host(application, team_id)
            _refused(await client.post("/v1/capsules", json={}), "max_capsules", 1, 1)
            await _set(application, team_id, max_capsules=5)  # the team's own value wins
            _passed_the_limits(await client.post("/v1/capsules", json={}))


async def _team_with_key(app: FastAPI) -> tuple[str, str]:
    from wrenn_platform.control_plane.db.models import ApiKey, Team
    from wrenn_platform.control_plane.security import new_api_key, sha256_hex

    async with app.state.sessionmaker() as db:
        team = Team(name="Limits")
        db.add(team)
        await db.flush()
        key, prefix = new_api_key()
        db.add(ApiKey(team_id=team.id, name="k", key_hash=sha256_hex(key), key_prefix=prefix))
        await db.commit()
        return team.id, key


async def test_an_api_key_past_its_requests_per_second_gets_429(app: FastAPI) -> None:
    team_id, key = await _team_with_key(app)
    await _set(app, team_id, api_key_requests_per_second=5)
    async with make_client(app, headers={"X-API-Key": key}) as client:
        await asyncio.sleep(1.0 - (asyncio.get_running_loop().time() % 1.0))  # start near a window's start
        statuses = [(await client.get("/v1/capsules")).status_code for _ in range(8)]
        assert statuses.count(200) <= 5 and 429 in statuses, statuses
        refused = await client.get("/v1/capsules")
        if refused.status_code == 429:
            assert refused.headers["Retry-After"] == "1"
            assert "api_key_requests_per_second is 5" in refused.json()["error"]["message"]
        await asyncio.sleep(1.1)
        assert (await client.get("/v1/capsules")).status_code == 200
        await _set(app, team_id, api_key_requests_per_second=0)  # no limit, at once (the key cache drops it)
        statuses = [(await client.get("/v1/capsules")).status_code for _ in range(20)]
        assert set(statuses) == {200}, statuses


# Row locks: PostgreSQL only (SQLite is the one-process embedded server, held by the process lock).
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_replicas_take_turns_on_the_last_place(database_url: str, settings: Settings) -> None:
    """Two replicas (two engines, no shared process lock) check the same team at once: the second
    waits on the team's row until the first has committed its capsule, then sees it and refuses."""
    application = create_app(settings.model_copy(update={"team_max_capsules": 1}))
    async with application.router.lifespan_context(application):
        team_id, _ = await _team_with_key(application)
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        first_checked = asyncio.Event()

        async def replica(n: int) -> str:
            async with make_sessionmaker(engines[n])() as db:
                if n == 1:
                    await first_checked.wait()
                try:
                    await team_limits.check_new_capsule(db, team_id, application.state.settings, vcpus=1,
                                                        memory_mb=512, disk_mb=1024)
                except Exception as exc:
                    return f"refused: {exc}"
                if n == 0:
                    first_checked.set()
                    await asyncio.sleep(0.5)  # replica 1 is now waiting on the row
                db.add(Capsule(team_id=team_id, host_id="h", status="starting"))
                await db.commit()
                return "created"

        results = await asyncio.gather(replica(0), replica(1))
    finally:
        for engine in engines:
            await engine.dispose()
    assert results[0] == "created" and results[1].startswith("refused: team limit max_capsules is 1"), results


def test_wrenn_admin_team_limits(database_url: str, tmp_path: Path) -> None:
    async def seed() -> str:
        application = create_app(Settings(data_dir=tmp_path, database_url=database_url, embedded_agent=False))
        async with application.router.lifespan_context(application):
            team_id, _ = await _team_with_key(application)
            await _on_host(application, team_id, vcpus=3)
        return team_id

    team_id = asyncio.run(seed())
    env = {"WRENN_DATABASE_URL": database_url, "WRENN_DATA_DIR": str(tmp_path), "WRENN_TEAM_MAX_CAPSULES": "7"}
    runner = CliRunner()
    shown = runner.invoke(cli, ["admin", "team-limits", team_id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "max_capsules: 7 (default), in use 1" in shown.output and "max_vcpus: 64 (default), in use 3" in shown.output
    changed = runner.invoke(cli, ["admin", "team-limits", team_id, "--max-vcpus", "8", "--max-snapshots", "0"], env=env)
    assert changed.exit_code == 0, changed.output
    assert "max_vcpus: 8 (team), in use 3" in changed.output and "max_snapshots: no limit (team)" in changed.output
    back = runner.invoke(cli, ["admin", "team-limits", team_id, "--default", "max_vcpus"], env=env)
    assert "max_vcpus: 64 (default)" in back.output
    wrong = runner.invoke(cli, ["admin", "team-limits", team_id, "--default", "max_cpus"], env=env)
    assert wrong.exit_code == 2 and "not a limit" in wrong.output
    missing = runner.invoke(cli, ["admin", "team-limits", "team-nope"], env=env)
    assert missing.exit_code == 2 and "not found" in missing.output
