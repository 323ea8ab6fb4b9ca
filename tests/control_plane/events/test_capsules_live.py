"""Events, audit entries and channel deliveries of real capsules: a `wrenn server` with its embedded
host agent (namespace runtime, the built `minimal` template) under uvicorn, driven over HTTP.

The server helpers are the capsule API tests' (`tests/control_plane/capsules/conftest.py`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from wrenn_platform.control_plane.auth.principal import SESSION_COOKIE
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.models import ApiKey, AuthSession, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import new_api_key, new_token, sha256_hex
from wrenn_platform.host_agent.templates import TemplateInfo

from ..capsules.conftest import ServerThread, cache_dir_of, make_settings, scratch_database, scratch_root
from .conftest import Receiver, SSEOpener
from .test_channels import SECRET, verify, webhook

pytestmark = pytest.mark.root


@dataclass
class Live:
    server: ServerThread
    team_id: str
    api_key: str
    sid: str
    csrf: str
    key_id: str


async def _tenant(database_url: str) -> tuple[str, str, str, str, str]:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            team = Team(name="Live events")
            user = User(email=f"live-{secrets.token_hex(4)}@example.com", name="Live", is_active=True)
            db.add_all([team, user])
            await db.flush()
            db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            key, prefix = new_api_key()
            api_key = ApiKey(team_id=team.id, created_by=user.id, name="live", key_hash=sha256_hex(key),
                             key_prefix=prefix)
            sid, csrf = new_token(), new_token()
            db.add_all([api_key, AuthSession(sid_hash=sha256_hex(sid), user_id=user.id, team_id=team.id,
                                             expires_at=utcnow() + timedelta(hours=1))])
            await db.commit()
            return team.id, key, sid, csrf, api_key.id
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_capsules(request: pytest.FixtureRequest, minimal_template: TemplateInfo) -> Iterator[Live]:
    with scratch_root() as root, scratch_database(request.param, root) as database_url:
        team_id, key, sid, csrf, key_id = asyncio.run(_tenant(database_url))
        settings = make_settings(root / "data", database_url, cache_dir_of(minimal_template),
                                 events_poll_seconds=0.2, events_keepalive_seconds=1.0,
                                 channel_backoff_seconds=0.2, channel_backoff_max_seconds=1.0,
                                 channel_allow_private_destinations=True)
        server = ServerThread(settings)
        server.start()
        try:
            yield Live(server, team_id, key, sid, csrf, key_id)
        finally:
            server.stop()


async def _wait(client: httpx.AsyncClient, capsule_id: str, status: str) -> None:
    async with asyncio.timeout(60):
        while True:
            if (await client.get(f"/v1/capsules/{capsule_id}")).json()["status"] == status:
                return
            await asyncio.sleep(0.05)


async def test_capsule_lifecycle_events_audit_and_webhook(live_capsules: Live, open_sse: SSEOpener,
                                                          receiver: Any) -> None:
    live = live_capsules
    hook: Receiver = await receiver()
    session = httpx.AsyncClient(base_url=live.server.url, cookies={SESSION_COOKIE: live.sid, "wrenn_csrf": live.csrf},
                                headers={"X-CSRF-Token": live.csrf}, timeout=60)
    api = httpx.AsyncClient(base_url=live.server.url, headers={"X-API-Key": live.api_key}, timeout=60)
    try:
        created = await session.post("/v1/channels", json=webhook(
            f"{hook.url}/hook", ["capsule.create", "capsule.destroy", "template.snapshot.create"]))
        assert created.status_code == 201, created.text
        stream = await open_sse(live.server.url, headers={"X-API-Key": live.api_key})
        assert (await stream.next_event()).event == "connected"

        response = await api.post("/v1/capsules", json={"memory_mb": 256, "disk_size_mb": 512})
        assert response.status_code == 202, response.text
        capsule_id = response.json()["id"]
        await _wait(api, capsule_id, "running")
        for action, target in (("pause", "paused"), ("resume", "running")):
            assert (await api.post(f"/v1/capsules/{capsule_id}/{action}")).status_code == 202
            await _wait(api, capsule_id, target)
        snap = await api.post("/v1/snapshots", json={"sandbox_id": capsule_id, "name": f"ev-{secrets.token_hex(3)}"})
        assert snap.status_code == 201, snap.text
        name = snap.json()["name"]
        assert (await api.delete(f"/v1/snapshots/{name}")).status_code == 204
        assert (await api.delete(f"/v1/capsules/{capsule_id}")).status_code == 202
        await _wait(api, capsule_id, "stopped")

        actions: list[tuple[str, str | None, str]] = []
        async with asyncio.timeout(30):
            while not actions or actions[-1][0] != "capsule.destroy":
                frame = await stream.next_event()
                if frame.event != "capsule.state.changed":
                    actions.append((frame.event, frame.data.get("outcome"), frame.data["resource"]["id"]))
                    assert frame.data["actor"] == {"type": "api_key", "id": live.key_id, "name": "live"}
        assert actions == [
            ("capsule.create", "success", capsule_id), ("capsule.pause", "success", capsule_id),
            ("capsule.resume", "success", capsule_id), ("template.snapshot.create", "success", name),
            ("template.snapshot.delete", "success", name), ("capsule.destroy", "success", capsule_id)]

        delivered = await hook.wait_for(3, within=20)
        assert [r.json()["event"] for r in delivered] == ["capsule.create", "template.snapshot.create",
                                                          "capsule.destroy"]
        assert all(verify(SECRET, r.headers, r.body) for r in delivered)
        assert delivered[0].json()["sandbox"]["status"] == "running"

        entries = (await session.get("/v1/audit-logs", params={"limit": 200})).json()["entries"]
        capsule_audit = [(e["action"], e["actor_type"]) for e in reversed(entries) if e["resource_type"] == "capsule"]
        assert capsule_audit == [("create", "api_key"), ("pause", "api_key"), ("resume", "api_key"),
                                 ("destroy", "api_key")]
        template_audit = [e["action"] for e in reversed(entries) if e["resource_type"] == "template"]
        assert template_audit == ["create", "delete"]
    finally:
        await session.aclose()
        await api.aclose()
