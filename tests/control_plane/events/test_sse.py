"""`/v1/events/stream` and `/v1/admin/events/stream` over real HTTP (uvicorn), on SQLite and PostgreSQL.

Events are caused the way the control plane causes them: capsule records change status in their
own transactions (as the capsule service and reconciler write them), and each change is turned
into events in that transaction (`events/derive.py`).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from wrenn_platform.control_plane.events.hub import Hub
from wrenn_platform.control_plane.events.record import record_event

from ..conftest import UserFactory
from .conftest import Served, SSEOpener, cookies_of, move_capsule, new_capsule, published


async def test_connected_first_then_own_team_only_in_order(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    alice, bob = await make_user(), await make_user()
    a_stream = await open_sse(live.url, cookies=cookies_of(alice.client))
    b_stream = await open_sse(live.url, cookies=cookies_of(bob.client))
    first = await a_stream.next_event()
    assert first.event == "connected" and first.data["event"] == "connected"
    assert (await b_stream.next_event()).event == "connected"

    a_capsule = await new_capsule(app, alice.team_id)
    b_capsule = await new_capsule(app, bob.team_id)
    await move_capsule(app, a_capsule, "running", "pausing", "paused")
    await move_capsule(app, b_capsule, "error", error="no space left")

    got = await a_stream.events(6)
    assert [(f.event, f.data.get("outcome"), f.data["metadata"].get("to")) for f in got] == [
        ("capsule.state.changed", None, "starting"),
        ("capsule.state.changed", None, "running"),
        ("capsule.create", "success", "running"),
        ("capsule.state.changed", None, "pausing"),
        ("capsule.state.changed", None, "paused"),
        ("capsule.pause", "success", "paused"),
    ]
    ids = [int(f.id) for f in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {f.data["resource"]["id"] for f in got} == {a_capsule}
    create = got[2]
    assert create.data["resource"] == {"id": a_capsule, "type": "capsule"}
    assert create.data["sandbox"]["id"] == a_capsule and create.data["sandbox"]["status"] == "running"
    assert create.data["actor"]["type"] == "system"
    assert create.data["timestamp"].endswith("Z")

    b_got = await b_stream.events(3)
    assert [(f.event, f.data.get("outcome")) for f in b_got] == [
        ("capsule.state.changed", None), ("capsule.state.changed", None), ("capsule.create", "error")]
    assert b_got[2].data["error"] == "no space left"
    assert {f.data["resource"]["id"] for f in b_got} == {b_capsule}
    assert await a_stream.quiet(0.5) == []  # nothing of Bob's team reached Alice


async def test_api_key_stream_and_auth(app: FastAPI, live: Served, make_user: UserFactory,
                                       open_sse: SSEOpener) -> None:
    alice = await make_user()
    created = await alice.client.post("/v1/api-keys", json={"name": "sdk"})
    assert created.status_code == 201, created.text
    stream = await open_sse(live.url, headers={"X-API-Key": created.json()["key"]})
    assert (await stream.next_event()).event == "connected"
    capsule = await new_capsule(app, alice.team_id)
    frame = await stream.next_event()
    assert frame.event == "capsule.state.changed" and frame.data["resource"]["id"] == capsule

    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        missing = await anonymous.get("/v1/events/stream")
        bad_key = await anonymous.get("/v1/events/stream", headers={"X-API-Key": "wrn_" + "0" * 32})
        admin_anonymous = await anonymous.get("/v1/admin/events/stream")
    for response in (missing, bad_key, admin_anonymous):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_a_logged_out_session_stops_receiving(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    alice = await make_user()
    stream = await open_sse(live.url, cookies=cookies_of(alice.client))
    assert (await stream.next_event()).event == "connected"
    first = await new_capsule(app, alice.team_id)
    assert (await stream.next_event()).data["resource"]["id"] == first
    assert (await alice.client.post("/v1/auth/logout-all")).status_code == 204
    await asyncio.sleep(1.2)  # past the stream's re-check interval
    await new_capsule(app, alice.team_id)
    with pytest.raises(EOFError):  # the stream ends instead of delivering the team's next event
        await stream.next_event()


async def test_a_deleted_api_key_stops_receiving(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    alice = await make_user()
    created = await alice.client.post("/v1/api-keys", json={"name": "sdk"})
    stream = await open_sse(live.url, headers={"X-API-Key": created.json()["key"]})
    assert (await stream.next_event()).event == "connected"
    assert (await alice.client.delete(f"/v1/api-keys/{created.json()['id']}")).status_code == 204
    await asyncio.sleep(1.2)
    await new_capsule(app, alice.team_id)
    with pytest.raises(EOFError):
        await stream.next_event()


async def test_last_event_id_replays_what_was_missed(app: FastAPI, live: Served, make_user: UserFactory,
                                                     open_sse: SSEOpener) -> None:
    alice, bob = await make_user(), await make_user()
    cookies = cookies_of(alice.client)
    stream = await open_sse(live.url, cookies=cookies)
    await stream.next_event()  # connected
    capsule = await new_capsule(app, alice.team_id)
    seen = await stream.next_event()
    await stream.aclose()

    await move_capsule(app, capsule, "running")  # 2 events Alice missed
    await new_capsule(app, bob.team_id)  # not hers: never replayed to her
    await move_capsule(app, capsule, "stopping")  # 1 more

    resumed = await open_sse(live.url, cookies=cookies, headers={"Last-Event-ID": seen.id})
    assert (await resumed.next_event()).event == "connected"
    replayed = await resumed.events(3)
    assert [(f.event, f.data["metadata"].get("to")) for f in replayed] == [
        ("capsule.state.changed", "running"), ("capsule.create", "running"), ("capsule.state.changed", "stopping")]
    assert all(int(f.id) > int(seen.id) for f in replayed)
    await move_capsule(app, capsule, "stopped")  # and then live, without repeats
    live_frames = await resumed.events(2)
    assert [f.event for f in live_frames] == ["capsule.state.changed", "capsule.destroy"]
    assert int(live_frames[0].id) > int(replayed[-1].id)
    assert await resumed.quiet(0.5) == []


async def test_replay_is_bounded(app: FastAPI, live: Served, make_user: UserFactory,
                                 open_sse: SSEOpener) -> None:
    alice = await make_user()
    app.state.settings.events_replay_limit = 3
    capsule = await new_capsule(app, alice.team_id)
    await move_capsule(app, capsule, "running", "pausing", "paused")  # 6 events in all
    await published(app)
    stream = await open_sse(live.url, cookies=cookies_of(alice.client), headers={"Last-Event-ID": "0"})
    await stream.next_event()
    replayed = await stream.events(3)
    assert [f.event for f in replayed] == ["capsule.state.changed", "capsule.state.changed", "capsule.pause"]
    assert await stream.quiet(0.5) == []


async def test_admin_stream_sees_every_team_and_needs_an_admin(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    admin, alice, bob = await make_user(admin=True), await make_user(), await make_user()
    stream = await open_sse(live.url, "/v1/admin/events/stream", cookies=cookies_of(admin.client))
    assert (await stream.next_event()).event == "connected"
    a, b = await new_capsule(app, alice.team_id), await new_capsule(app, bob.team_id)
    got = await stream.events(2)
    assert [f.data["resource"]["id"] for f in got] == [a, b]

    # Alice deletes her team through the API: its capsules are destroyed, in her name.
    await move_capsule(app, a, "running")
    assert [f.event for f in await stream.events(2)] == ["capsule.state.changed", "capsule.create"]
    deleted = await alice.client.delete(f"/v1/teams/{alice.team_id}")
    assert deleted.status_code == 204, deleted.text
    stopping = await stream.next_event()
    assert stopping.data["metadata"] == {"from": "running", "to": "stopping"}
    assert stopping.data["actor"] == {"type": "user", "id": alice.id, "name": "Test User"}

    async with httpx.AsyncClient(base_url=live.url, cookies=cookies_of(alice.client)) as c:
        refused = await c.get("/v1/admin/events/stream")
    assert refused.status_code in (401, 403)
    async with httpx.AsyncClient(base_url=live.url, cookies=cookies_of(bob.client)) as c:
        refused = await c.get("/v1/admin/events/stream")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_keepalive_comment_when_idle(live: Served, make_user: UserFactory, open_sse: SSEOpener) -> None:
    alice = await make_user()
    stream = await open_sse(live.url, cookies=cookies_of(alice.client))
    assert (await stream.next_event()).event == "connected"
    frame = await stream.next_frame(within=3)
    assert frame is not None and frame.comment == "keepalive"  # events_keepalive_seconds=0.5 here


async def test_events_of_concurrent_transactions_arrive_once_in_commit_order(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    admin, alice = await make_user(admin=True), await make_user()
    stream = await open_sse(live.url, "/v1/admin/events/stream", cookies=cookies_of(admin.client))
    await stream.next_event()
    ids = await asyncio.gather(*(new_capsule(app, alice.team_id) for _ in range(30)))
    got = await stream.events(30)
    seqs = [int(f.id) for f in got]
    assert seqs == list(range(seqs[0], seqs[0] + 30))  # gap-free, increasing
    assert sorted(f.data["resource"]["id"] for f in got) == sorted(ids)
    assert await stream.quiet(0.5) == []


async def test_record_event_is_published_only_if_its_transaction_commits(
    app: FastAPI, live: Served, make_user: UserFactory, open_sse: SSEOpener
) -> None:
    alice = await make_user()
    stream = await open_sse(live.url, cookies=cookies_of(alice.client))
    await stream.next_event()
    async with app.state.sessionmaker() as db:
        record_event(db, team_id=alice.team_id, event="host.down", resource_id="host-rolledback",
                     resource_type="host")
        await db.rollback()
    async with app.state.sessionmaker() as db:
        record_event(db, team_id=alice.team_id, event="host.up", resource_id="host-committed", resource_type="host",
                     metadata={"host_ip": "10.0.0.1"})
        await db.commit()
    frame = await stream.next_event()
    assert frame.event == "host.up" and frame.data["resource"] == {"id": "host-committed", "type": "host"}
    assert "outcome" not in frame.data and "sandbox" not in frame.data
    assert await stream.quiet(0.5) == []


async def test_a_slow_client_is_cut_off_without_slowing_the_others(app: FastAPI, make_user: UserFactory) -> None:
    alice = await make_user()
    hub = Hub(app.state.sessionmaker, queue_size=5)
    await hub.start()
    slow, reader = hub.subscribe(alice.team_id), hub.subscribe(None)
    capsule = await new_capsule(app, alice.team_id)
    received: list[int] = []
    texts: list[str] = []
    for statuses in (("running",), ("pausing", "paused"), ("resuming", "running")):  # 3 events each
        await move_capsule(app, capsule, *statuses)
        await published(app)  # by the app's relay
        await asyncio.wait_for(hub.catch_up(), 5)  # fan-out never waits for a reader
        while not reader.queue.empty():
            item = reader.queue.get_nowait()
            assert item is not None
            received.append(item.seq)
            texts.append(item.text)
    assert len(received) == 9 and received == list(range(received[0], received[0] + 9)), texts
    assert slow.queue.get_nowait() is None and slow.queue.empty()  # told to reconnect, nothing else
    assert slow not in hub._subscribers and reader in hub._subscribers
