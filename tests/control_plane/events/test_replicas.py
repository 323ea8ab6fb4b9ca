"""Two control-plane processes sharing one PostgreSQL database and one Redis: an event caused through
one reaches the SSE clients of the other, once, in order, and only those of its team.

The servers poll the outbox only every 30 s here, so an event seen within seconds on the other
process went through Redis.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import AuthSession, Capsule, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.hosts.service import create_pending_host
from wrenn_platform.control_plane.security import new_token, sha256_hex

from .conftest import Receiver, SSEOpener, free_socket
from .test_channels import SECRET, verify, webhook

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
REDIS_URL = os.environ.get("WRENN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def backend() -> str:
    return "postgres"


class Process:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "wrenn_platform.control_plane.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client, asyncio.timeout(60):
            while True:
                assert self.proc.poll() is None, "server exited during start-up"
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
async def replicas(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Process, Process]]:
    prefix = f"wrenn-test-{secrets.token_hex(4)}:"
    common = {**os.environ, "WRENN_DATABASE_URL": database_url, "WRENN_REDIS_URL": REDIS_URL,
              "WRENN_REDIS_PREFIX": prefix, "WRENN_SECRET_KEY": secrets.token_hex(32),
              "WRENN_EMBEDDED_AGENT": "false", "WRENN_SECURE_COOKIES": "false",
              "WRENN_EVENTS_POLL_SECONDS": "30", "WRENN_EVENTS_KEEPALIVE_SECONDS": "1",
              "WRENN_CHANNEL_ALLOW_PRIVATE_DESTINATIONS": "true"}
    started: list[Process] = []
    try:
        for name in ("a", "b"):  # one after the other: the first one migrates the database
            process = Process({**common, "WRENN_DATA_DIR": str(tmp_path / name)}, tmp_path / f"{name}.log")
            started.append(process)
            await process.ready()
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def _tenant(database_url: str) -> tuple[str, str, str, str]:
    """A team with a logged-in owner, a BYOC host waiting to join and a capsule on it:
    (team id, session id, registration token, capsule id)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            team = Team(name="Replicas")
            user = User(email=f"r-{secrets.token_hex(4)}@example.com", name="Rep", is_active=True)
            db.add_all([team, user])
            await db.flush()
            db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            sid = new_token()
            db.add(AuthSession(sid_hash=sha256_hex(sid), user_id=user.id, team_id=team.id,
                               expires_at=utcnow() + timedelta(hours=1)))
            await db.commit()
            host, token = await create_pending_host(db, host_type="byoc", team_id=team.id)
            capsule = Capsule(team_id=team.id, host_id=host.id, status="running")
            db.add(capsule)
            await db.commit()
            return team.id, sid, token, capsule.id
    finally:
        await engine.dispose()


async def test_an_event_caused_through_one_process_reaches_the_other_once(
    replicas: tuple[Process, Process], database_url: str, open_sse: SSEOpener
) -> None:
    a, b = replicas
    team_id, sid, token, capsule_id = await _tenant(database_url)
    other_team, other_sid, _, other_capsule = await _tenant(database_url)
    on_b = await open_sse(b.url, cookies={SESSION_COOKIE: sid})
    on_a = await open_sse(a.url, cookies={SESSION_COOKIE: sid})
    other_on_b = await open_sse(b.url, cookies={SESSION_COOKIE: other_sid})
    for stream in (on_a, on_b, other_on_b):
        assert (await stream.next_event()).event == "connected"

    async with httpx.AsyncClient(base_url=a.url) as client:
        registered = await client.post("/v1/hosts/register", json={"token": token, "address": "10.1.2.3:9000"})
    assert registered.status_code == 201, registered.text
    host_id, host_jwt = registered.json()["host"]["id"], registered.json()["token"]

    # The tenant's capsule record (written before) and the host coming up, in commit order.
    for stream in (on_b, on_a):
        got = await stream.events(2, within=10)
        assert [(f.event, f.data["resource"]["id"]) for f in got] == [
            ("capsule.state.changed", capsule_id), ("host.up", host_id)]
        assert got[1].data["metadata"]["host_ip"] == "10.1.2.3:9000"
        assert int(got[0].id) < int(got[1].id)

    async with httpx.AsyncClient(base_url=b.url, headers={"X-Host-Token": host_jwt}) as client:
        reported = await client.post("/v1/hosts/sandbox-events", json={
            "event": "sandbox.auto_paused", "sandbox_id": capsule_id, "host_id": host_id})
    assert reported.status_code == 204, reported.text
    for stream in (on_a, on_b):
        frame = await stream.next_event(within=10)
        assert frame.event == "capsule.state.changed"
        assert frame.data["metadata"] == {"from": "running", "to": "paused"}
        assert frame.data["sandbox"]["status"] == "paused"

    for stream in (on_a, on_b):
        assert await stream.quiet(1.5) == []  # nothing twice, nothing of another team
    others = await other_on_b.quiet(0.5)  # the other team saw its own capsule only
    assert [(f.event, f.data["resource"]["id"]) for f in others] == [("capsule.state.changed", other_capsule)]
    assert other_team != team_id


async def test_each_delivery_is_made_once_by_one_of_the_replicas(
    replicas: tuple[Process, Process], database_url: str, receiver: Any
) -> None:
    """Both processes run a dispatcher on the same deliveries: each event reaches the webhook once."""
    a, b = replicas
    hook: Receiver = await receiver()
    team_id, sid, token, _ = await _tenant(database_url)
    csrf = new_token()
    async with httpx.AsyncClient(base_url=a.url, cookies={SESSION_COOKIE: sid, CSRF_COOKIE: csrf},
                                 headers={CSRF_HEADER: csrf}) as owner:
        created = await owner.post("/v1/channels", json=webhook(f"{hook.url}/hook", ["capsule.destroy"]))
        assert created.status_code == 201, created.text
        registered = await owner.post("/v1/hosts/register", json={"token": token, "address": "10.9.9.9:1"})
    assert registered.status_code == 201
    host_id, host_jwt = registered.json()["host"]["id"], registered.json()["token"]

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            capsules = [Capsule(team_id=team_id, host_id=host_id, status="stopping") for _ in range(12)]
            db.add_all(capsules)
            await db.commit()
    finally:
        await engine.dispose()
    for index, capsule in enumerate(capsules):  # the host reports each one gone, alternately to A and B
        async with httpx.AsyncClient(base_url=(a, b)[index % 2].url, headers={"X-Host-Token": host_jwt}) as host:
            reported = await host.post("/v1/hosts/sandbox-events", json={
                "event": "sandbox.stopped", "sandbox_id": capsule.id, "host_id": host_id})
        assert reported.status_code == 204, reported.text

    delivered = await hook.wait_for(12, within=20)
    await asyncio.sleep(1.5)  # and no second delivery of any of them
    assert len(hook.requests) == 12
    assert sorted(r.json()["resource"]["id"] for r in delivered) == sorted(c.id for c in capsules)
    assert len({r.headers["x-wrenn-delivery"] for r in delivered}) == 12
    assert all(verify(SECRET, r.headers, r.body) and r.json()["outcome"] == "success" for r in delivered)
