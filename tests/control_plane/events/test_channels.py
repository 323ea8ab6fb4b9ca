"""Notification channels: CRUD, validation, secrets (encrypted, never returned), the `test` route and
each provider's message format, and delivery of events (signed webhooks, retries, isolation).

The providers are local HTTP servers (`Receiver`); the provider URL prefixes point at them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from sqlalchemy import select

from wrenn_platform.control_plane.channels.crypto import decrypt_config
from wrenn_platform.control_plane.db.models import Channel, ChannelDelivery, ChannelDeliveryAttempt

from ..conftest import UserFactory
from .conftest import Receiver, move_capsule, new_capsule

ReceiverFactory = Callable[[], Awaitable[Receiver]]
TELEGRAM_TOKEN = "123456:ABCdefGhIJKlmnoPQRstuVWXyz0123456789"
SECRET = "s3cret-for-tests-0123456789"


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does (the recipe in docs/events.md): recompute the HMAC and check the timestamp."""
    timestamp = headers["x-wrenn-timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) < tolerance_s
    return hmac.compare_digest(expected, headers["x-wrenn-signature"]) and fresh


def webhook(url: str, events: list[str], name: str = "hook", secret: str | None = SECRET) -> dict[str, Any]:
    config = {"url": url} | ({"secret": secret} if secret else {})
    return {"name": name, "provider": "webhook", "config": config, "events": events}


async def test_crud_and_secrets_never_returned(app: FastAPI, make_user: UserFactory,
                                               receiver: ReceiverFactory) -> None:
    alice, bob = await make_user(), await make_user()
    r = await receiver()
    created = await alice.client.post("/v1/channels", json=webhook(f"{r.url}/hook", ["capsule.create"], secret=None))
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "team_id", "name", "provider", "events", "created_at", "updated_at", "secret"}
    assert body["team_id"] == alice.team_id and body["provider"] == "webhook" and body["events"] == ["capsule.create"]
    generated = body["secret"]
    assert generated and len(generated) >= 32
    channel_id = body["id"]

    fetched = (await alice.client.get(f"/v1/channels/{channel_id}")).json()
    listed = (await alice.client.get("/v1/channels")).json()
    assert fetched["secret"] is None and [c["id"] for c in listed] == [channel_id] and listed[0]["secret"] is None
    assert "config" not in fetched

    async with app.state.sessionmaker() as db:
        row = await db.get(Channel, channel_id)
        assert row is not None
        assert generated not in row.config_encrypted and r.url not in row.config_encrypted
        assert decrypt_config(app.state.settings, row.config_encrypted) == {"url": f"{r.url}/hook",
                                                                             "secret": generated}

    updated = await alice.client.patch(f"/v1/channels/{channel_id}",
                                       json={"name": "renamed", "events": ["host.up", "host.down", "host.up"]})
    assert updated.status_code == 200 and updated.json()["name"] == "renamed"
    assert updated.json()["events"] == ["host.down", "host.up"] and updated.json()["secret"] is None

    rotated = await alice.client.put(f"/v1/channels/{channel_id}/config", json={"config": {"url": f"{r.url}/new"}})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret and new_secret != generated
    async with app.state.sessionmaker() as db:
        row = await db.get(Channel, channel_id)
        assert row is not None
        assert decrypt_config(app.state.settings, row.config_encrypted) == {"url": f"{r.url}/new",
                                                                             "secret": new_secret}

    assert (await bob.client.get(f"/v1/channels/{channel_id}")).status_code == 404  # another team's
    assert (await bob.client.delete(f"/v1/channels/{channel_id}")).status_code == 404
    assert (await bob.client.get("/v1/channels")).json() == []
    assert (await alice.client.delete(f"/v1/channels/{channel_id}")).status_code == 204
    assert (await alice.client.get(f"/v1/channels/{channel_id}")).status_code == 404

    entries = (await alice.client.get("/v1/audit-logs")).json()["entries"]
    actions = [e["action"] for e in reversed(entries) if e["resource_type"] == "channel"]
    assert actions == ["create", "update", "config.rotate", "delete"]
    assert all(generated not in str(e) and new_secret not in str(e) for e in entries)


async def test_config_is_validated_per_provider(make_user: UserFactory, receiver: ReceiverFactory) -> None:
    alice = await make_user()
    r = await receiver()
    cases: list[tuple[str, dict[str, str], str]] = [
        ("discord", {}, "config.webhook_url"),
        ("discord", {"webhook_url": "https://evil.example.com/api/webhooks/1/x"}, "config.webhook_url"),
        ("slack", {"webhook_url": f"{r.url}/x", "channel": "#ops"}, "config.channel"),
        ("telegram", {"bot_token": "nope", "chat_id": "42"}, "config.bot_token"),
        ("telegram", {"bot_token": TELEGRAM_TOKEN}, "config.chat_id"),
        ("matrix", {"homeserver_url": r.url, "access_token": "t", "room_id": "general"}, "config.room_id"),
        ("matrix", {"homeserver_url": "ftp://x", "access_token": "t", "room_id": "!a:b"}, "config.homeserver_url"),
        ("webhook", {"url": "not a url"}, "config.url"),
        ("webhook", {"url": f"{r.url}/x", "secret": "short"}, "config.secret"),
    ]
    for provider, config, field in cases:
        response = await alice.client.post("/v1/channels", json={"name": f"c-{provider}", "provider": provider,
                                                                 "config": config, "events": ["host.up"]})
        assert response.status_code == 400, (provider, config, response.text)
        assert response.json()["error"]["message"].startswith(field), (field, response.text)
    bad_event = await alice.client.post("/v1/channels", json=webhook(f"{r.url}/x", ["capsule.running"]))
    assert bad_event.status_code == 400 and "events" in bad_event.json()["error"]["message"]
    bad_provider = await alice.client.post("/v1/channels", json={"name": "x", "provider": "pager", "config": {},
                                                                 "events": []})
    assert bad_provider.status_code == 400

    assert (await alice.client.post("/v1/channels", json=webhook(f"{r.url}/x", ["host.up"]))).status_code == 201
    duplicate = await alice.client.post("/v1/channels", json=webhook(f"{r.url}/y", ["host.up"]))
    assert duplicate.status_code == 400 and duplicate.json()["error"]["message"].startswith("name")
    assert r.requests == []  # validation never calls the provider


async def test_each_provider_gets_its_own_message_format(app: FastAPI, make_user: UserFactory,
                                                          receiver: ReceiverFactory) -> None:
    alice = await make_user()
    r = await receiver()
    app.state.settings.channel_telegram_url = f"{r.url}/telegram"
    configs: dict[str, dict[str, str]] = {
        "discord": {"webhook_url": f"{r.url}/api/webhooks/1/abc"},
        "slack": {"webhook_url": f"{r.url}/services/T0/B0/x"},
        "teams": {"webhook_url": f"{r.url}/webhookb2/x"},
        "googlechat": {"webhook_url": f"{r.url}/v1/spaces/AAA/messages?key=k&token=t"},
        "telegram": {"bot_token": TELEGRAM_TOKEN, "chat_id": "-100123"},
        "matrix": {"homeserver_url": r.url, "access_token": "syt_token", "room_id": "!room:example.org"},
        "webhook": {"url": f"{r.url}/hook", "secret": SECRET},
    }
    for provider, config in configs.items():
        response = await alice.client.post("/v1/channels/test", json={"provider": provider, "config": config})
        assert response.status_code == 200, (provider, response.text)
        assert response.json() == {"status": "ok"}
    got = {provider: request for provider, request in zip(configs, r.requests, strict=True)}

    discord = got["discord"].json()
    assert got["discord"].path == "/api/webhooks/1/abc" and got["discord"].method == "POST"
    assert discord["embeds"][0]["title"].startswith("Wrenn: test") and discord["content"]
    slack = got["slack"].json()
    assert slack["text"].startswith("Wrenn: test") and slack["blocks"][0]["type"] == "header"
    card = got["teams"].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["body"][0]["text"].startswith("Wrenn")
    assert got["googlechat"].json()["text"].startswith("Wrenn: test")
    assert got["googlechat"].headers["content-type"] == "application/json; charset=UTF-8"
    telegram = got["telegram"]
    assert telegram.path == f"/telegram/bot{TELEGRAM_TOKEN}/sendMessage"
    assert telegram.json()["chat_id"] == "-100123" and telegram.json()["parse_mode"] == "HTML"
    matrix = got["matrix"]
    assert matrix.method == "PUT" and matrix.headers["authorization"] == "Bearer syt_token"
    prefix = "/_matrix/client/v3/rooms/!room:example.org/send/m.room.message/"
    assert unquote(matrix.path).startswith(prefix) and len(unquote(matrix.path)) > len(prefix)
    assert matrix.json()["msgtype"] == "m.text" and matrix.json()["format"] == "org.matrix.custom.html"
    hook = got["webhook"]
    assert verify(SECRET, hook.headers, hook.body) and hook.json()["event"] == "test"
    assert not verify("another-secret-0123456789", hook.headers, hook.body)

    r.status = 500
    refused = await alice.client.post("/v1/channels/test", json={"provider": "slack", "config": configs["slack"]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "delivery_failed"
    entries = (await alice.client.get("/v1/audit-logs")).json()["entries"]
    tests = [e for e in entries if e["action"] == "test"]
    assert [e["status"] for e in tests][:2] == ["failure", "success"]
    assert all(TELEGRAM_TOKEN not in str(e) and "syt_token" not in str(e) for e in entries)


async def test_webhook_gets_every_subscribed_event_signed(app: FastAPI, make_user: UserFactory,
                                                          receiver: ReceiverFactory) -> None:
    alice, bob = await make_user(), await make_user()
    r = await receiver()
    created = await alice.client.post("/v1/channels", json=webhook(f"{r.url}/hook",
                                                                   ["capsule.create", "capsule.destroy"]))
    assert created.status_code == 201
    mine, theirs = await new_capsule(app, alice.team_id), await new_capsule(app, bob.team_id)
    await move_capsule(app, theirs, "running")  # another team's: never sent here
    await move_capsule(app, mine, "running", "pausing", "paused", "stopping", "stopped")
    requests = await r.wait_for(2)
    assert await _settled(r, 2)
    assert [req.json()["event"] for req in requests] == ["capsule.create", "capsule.destroy"]
    for req in requests:
        assert verify(SECRET, req.headers, req.body)
        body = req.json()
        assert body["resource"] == {"id": mine, "type": "capsule"} and body["outcome"] == "success"
        assert req.headers["x-wrenn-event"] == body["event"] and req.headers["x-wrenn-delivery"]
    assert len({req.headers["x-wrenn-delivery"] for req in requests}) == 2


async def _settled(r: Receiver, count: int, seconds: float = 0.8) -> bool:
    await asyncio.sleep(seconds)
    return len(r.requests) == count


async def test_retries_after_the_receiver_was_down(app: FastAPI, make_user: UserFactory,
                                                   receiver: ReceiverFactory) -> None:
    alice = await make_user()
    r = await receiver()
    assert (await alice.client.post("/v1/channels", json=webhook(f"{r.url}/hook", ["capsule.create"]))).status_code \
        == 201
    await r.served.stop()  # down: connection refused
    capsule = await new_capsule(app, alice.team_id)
    await move_capsule(app, capsule, "running")
    async with asyncio.timeout(10):
        while True:
            if await _attempts(app) >= 3:
                break
            await asyncio.sleep(0.1)
    await r.served.start()  # back, on the same port
    requests = await r.wait_for(1)
    assert verify(SECRET, requests[0].headers, requests[0].body)
    assert requests[0].json()["resource"]["id"] == capsule
    async with asyncio.timeout(5):
        while True:
            async with app.state.sessionmaker() as db:
                delivery = (await db.scalars(select(ChannelDelivery))).one()
                attempts = (await db.scalars(select(ChannelDeliveryAttempt).order_by(ChannelDeliveryAttempt.id))).all()
            if delivery.status == "delivered":
                break
            await asyncio.sleep(0.05)
    assert delivery.attempts == len(attempts) >= 4
    assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
    assert all(not a.ok and a.status_code is None and "Connect" in a.error for a in attempts[:-1])
    assert attempts[-1].ok and attempts[-1].status_code == 200
    # Each retry waited its backoff: 0.2 s doubling, capped at 1 s (the settings of these tests).
    for attempt, (a, b) in enumerate(itertools.pairwise(attempts), start=1):
        assert (b.created_at - a.created_at).total_seconds() >= min(0.2 * 2 ** (attempt - 1), 1.0) * 0.9
    assert await _settled(r, 1)


async def _attempts(app: FastAPI) -> int:
    async with app.state.sessionmaker() as db:
        return len((await db.scalars(select(ChannelDeliveryAttempt))).all())


async def test_failing_channels_do_not_delay_the_others(app: FastAPI, make_user: UserFactory,
                                                        receiver: ReceiverFactory) -> None:
    alice = await make_user()
    hanging, failing, healthy = await receiver(), await receiver(), await receiver()
    app.state.settings.channel_timeout_seconds = 10.0  # what waiting for the hanging channel would cost
    hanging.delay = 30
    failing.status = 503
    ids: dict[str, str] = {}
    for name, r in (("hanging", hanging), ("failing", failing), ("healthy", healthy)):
        response = await alice.client.post("/v1/channels", json=webhook(f"{r.url}/hook", ["capsule.create"], name))
        assert response.status_code == 201
        ids[name] = response.json()["id"]
    for _ in range(3):
        capsule = await new_capsule(app, alice.team_id)
        started = time.monotonic()
        await move_capsule(app, capsule, "running")
        # Not held up by the hanging channel: delivered before that one's timeout could have passed.
        await healthy.wait_for(len(healthy.requests) + 1, within=app.state.settings.channel_timeout_seconds)
        assert time.monotonic() - started < app.state.settings.channel_timeout_seconds
    await failing.wait_for(3, within=5)  # tried and retried meanwhile, in its own worker
    async with app.state.sessionmaker() as db:
        pending = (await db.scalars(select(ChannelDelivery).where(
            ChannelDelivery.status == "pending", ChannelDelivery.channel_id.in_([ids["hanging"], ids["failing"]])
        ))).all()
    assert len(pending) == 6  # 3 events x (hanging + failing), still being retried
