"""The audit log: entries written with the changes they record, cursor pages that walk back without
gaps or repeats, team scoping, the admin log, and append-only storage. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import delete, select, text, update

from wrenn_platform.control_plane.audit import record_audit
from wrenn_platform.control_plane.audit.actor import Actor
from wrenn_platform.control_plane.audit.guard import AppendOnlyError
from wrenn_platform.control_plane.db.models import AuditLog
from wrenn_platform.control_plane.db.types import utcnow

from ..conftest import UserFactory


async def _walk(client: httpx.AsyncClient, path: str, limit: int, admin: bool = False) -> list[dict[str, Any]]:
    """Every entry, page by page, following the cursor (the admin log: the last entry is the cursor)."""
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(1000):
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        entries += body["entries"]
        if admin:
            assert set(body) == {"entries"}
            if len(body["entries"]) < limit:
                return entries
            last = body["entries"][-1]
            params = {"limit": limit, "before": last["created_at"], "before_id": last["id"]}
        else:
            assert len(body["entries"]) <= limit
            if body["next_cursor"] is None:
                return entries
            params = {"limit": limit, **body["next_cursor"]}
    raise AssertionError("the cursor never ended")


async def _seed(app: FastAPI, team_id: str, count: int, *, same_time: int = 0) -> None:
    """`count` entries; the first `same_time` share one timestamp (ties are ordered by id)."""
    now = utcnow()
    async with app.state.sessionmaker() as db:
        for i in range(count):
            row = record_audit(db, action=f"seeded.{i}", resource_type="test", resource_id=str(i), team_id=team_id,
                               actor=Actor("system", "system", "system"))
            row.created_at = now if i < same_time else now - timedelta(seconds=i)
        await db.commit()


async def test_pages_walk_back_without_gaps_or_repeats(app: FastAPI, make_user: UserFactory) -> None:
    alice, bob = await make_user(), await make_user()
    await _seed(app, alice.team_id, 37, same_time=12)
    await _seed(app, bob.team_id, 5)
    async with app.state.sessionmaker() as db:
        expected = (await db.scalars(select(AuditLog.id).where(AuditLog.team_id == alice.team_id)
                                     .order_by(AuditLog.created_at.desc(), AuditLog.id.desc()))).all()
    assert len(expected) >= 37
    for limit in (1, 5, 7, 200):
        walked = await _walk(alice.client, "/v1/audit-logs", limit)
        assert [e["id"] for e in walked] == list(expected)
    first = (await alice.client.get("/v1/audit-logs")).json()  # default limit: 50
    assert [e["id"] for e in first["entries"]] == list(expected[:50])
    assert first["next_cursor"] is None if len(expected) <= 50 else first["next_cursor"] is not None


async def test_team_log_is_scoped_and_admin_log_sees_all(app: FastAPI, make_user: UserFactory) -> None:
    admin, alice, bob = await make_user(admin=True), await make_user(), await make_user()
    await _seed(app, alice.team_id, 6)
    await _seed(app, bob.team_id, 4)
    alice_entries = await _walk(alice.client, "/v1/audit-logs", 4)
    async with app.state.sessionmaker() as db:
        bob_ids = set((await db.scalars(select(AuditLog.id).where(AuditLog.team_id == bob.team_id))).all())
        all_ids = (await db.scalars(select(AuditLog.id).order_by(AuditLog.created_at.desc(),
                                                                  AuditLog.id.desc()))).all()
    assert bob_ids and not bob_ids & {e["id"] for e in alice_entries}
    assert [e["id"] for e in await _walk(admin.client, "/v1/admin/audit-logs", 3, admin=True)] == list(all_ids)
    refused = await alice.client.get("/v1/admin/audit-logs")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_bad_page_parameters_are_400(make_user: UserFactory) -> None:
    alice = await make_user()
    for params in ({"limit": 0}, {"limit": 201}, {"before": "yesterday"}, {"before_id": "aud-nope"}):
        response = await alice.client.get("/v1/audit-logs", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


async def test_state_changing_calls_are_recorded_with_their_actor(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    created = await alice.client.post("/v1/api-keys", json={"name": "ci"})
    assert created.status_code == 201
    key_id = created.json()["id"]
    added = await alice.client.post(f"/v1/teams/{alice.team_id}/members", json={"email": bob.email})
    assert added.status_code == 201, added.text
    assert (await alice.client.patch(f"/v1/teams/{alice.team_id}", json={"name": "Renamed"})).status_code == 204
    async with httpx.AsyncClient(transport=alice.client._transport, base_url=str(alice.client.base_url),
                                 headers={"X-API-Key": created.json()["key"]}) as by_key:
        assert (await by_key.get("/v1/capsules")).status_code == 200  # a read: not audited
    assert (await alice.client.delete(f"/v1/api-keys/{key_id}")).status_code == 204

    entries = (await alice.client.get("/v1/audit-logs")).json()["entries"]
    got = [(e["resource_type"], e["action"], e["resource_id"]) for e in reversed(entries)
           if e["actor_type"] != "system"]
    assert got == [("api_key", "create", key_id), ("member", "add", bob.id), ("team", "rename", alice.team_id),
                   ("api_key", "delete", key_id)]
    for entry in entries:
        if entry["actor_type"] != "system":
            assert (entry["actor_type"], entry["actor_id"], entry["actor_name"]) == ("user", alice.id, "Test User")
            assert entry["scope"] == "team" and entry["status"] == "success"
    key_entry = next(e for e in entries if e["action"] == "create" and e["resource_type"] == "api_key")
    assert key_entry["metadata"]["name"] == "ci" and "key" not in key_entry["metadata"]


async def test_entries_are_append_only(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    await _seed(app, alice.team_id, 2)
    async with app.state.sessionmaker() as db:
        row = (await db.scalars(select(AuditLog).limit(1))).one()
        row.action = "rewritten"
        with pytest.raises(AppendOnlyError):
            await db.commit()
    async with app.state.sessionmaker() as db:
        row = (await db.scalars(select(AuditLog).limit(1))).one()
        await db.delete(row)
        with pytest.raises(AppendOnlyError):
            await db.commit()
    async with app.state.sessionmaker() as db:
        with pytest.raises(AppendOnlyError):
            await db.execute(update(AuditLog).values(action="x"))
        with pytest.raises(AppendOnlyError):
            await db.execute(delete(AuditLog))
    for statement in ("UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs"):
        with pytest.raises(Exception, match="append-only"):
            async with app.state.engine.begin() as connection:
                await connection.execute(text(statement))
    async with app.state.sessionmaker() as db:
        assert {r.action for r in (await db.scalars(select(AuditLog))).all()} >= {"seeded.0", "seeded.1"}

    for route in app.routes:
        if isinstance(route, APIRoute) and "audit" in route.path:
            assert route.methods == {"GET"}, route.path
