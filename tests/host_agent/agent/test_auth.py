"""Only the control plane, holding the host's secret, gets through — on HTTP and WebSocket routes."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import jwt
import pytest
import websockets

from wrenn_platform.agent_link.auth import AGENT, CONTROL_PLANE, HostKey, TokenError
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.wire.agent import SandboxEvent, Unauthorized

from .conftest import Served

pytestmark = pytest.mark.root


def forged(key: HostKey, **claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {"iss": CONTROL_PLANE, "aud": AGENT, "sub": key.host_id, "iat": now, "exp": now + 30}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key.secret, algorithm="HS256")


async def test_http_rejects_missing_and_bad_tokens(served: Served) -> None:
    key = served.key
    other = HostKey(key.host_id, secrets.token_bytes(32))
    bad = {
        "none": {},
        "not bearer": {"Authorization": f"Token {key.control_plane_token()}"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "other secret": {"Authorization": f"Bearer {other.control_plane_token()}"},
        "reflected agent token": {"Authorization": f"Bearer {key.agent_token()}"},
        "expired": {"Authorization": f"Bearer {forged(key, iat=int(time.time()) - 600, exp=int(time.time()) - 60)}"},
        "other host": {"Authorization": f"Bearer {forged(key, sub='host-other')}"},
        "no exp": {"Authorization": f"Bearer {forged(key, exp=None)}"},
        "alg none": {"Authorization": "Bearer " + jwt.encode(
            {"iss": CONTROL_PLANE, "aud": AGENT, "sub": key.host_id, "iat": 0, "exp": 2**31}, "", algorithm="none")},
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        for why, headers in bad.items():
            for method, path in (("GET", "/v1/info"), ("GET", "/v1/capsules"), ("POST", "/v1/capsules"),
                                 ("GET", "/v1/nonexistent")):
                r = await http.request(method, path, headers=headers)
                assert r.status_code == 401, (why, path, r.status_code)
                assert r.json()["error"]["code"] == "unauthorized"
        ok = await http.get("/v1/info", headers={"Authorization": f"Bearer {key.control_plane_token()}"})
        assert ok.status_code == 200 and ok.json()["host_id"] == key.host_id


async def test_websocket_handshake_rejected_with_401(served: Served) -> None:
    ws_url = served.url.replace("http", "ws") + "/v1/events"
    for headers in ({}, {"Authorization": f"Bearer {served.key.agent_token()}"}):
        with pytest.raises(websockets.InvalidStatus) as err:
            async with websockets.connect(ws_url, additional_headers=headers):
                pass
        assert err.value.response.status_code == 401
    wrong = HttpAgentClient(served.url, HostKey(served.key.host_id, secrets.token_bytes(32)))
    try:
        with pytest.raises(Unauthorized):
            async with wrong.pty("cl-x"):
                pass
        with pytest.raises(Unauthorized):
            await wrong.list_capsules()
    finally:
        await wrong.aclose()


async def test_events_are_signed_by_the_agent(served: Served, http: HttpAgentClient) -> None:
    """What the agent sends can be verified by the control plane, and not forged without the secret."""
    served.agent.events.publish("sandbox.error", "cl-abc", "test event")
    ws_url = served.url.replace("http", "ws") + "/v1/events?after=0"
    async with websockets.connect(ws_url, additional_headers={
            "Authorization": f"Bearer {served.key.control_plane_token()}"}) as ws:
        frame = json.loads(await ws.recv())
    claims = served.key.verify_agent_token(frame["token"])
    ev = SandboxEvent.model_validate(claims["msg"])
    assert (ev.event, ev.sandbox_id, ev.host_id) == ("sandbox.error", "cl-abc", "host-test")
    with pytest.raises(TokenError):
        served.key.verify_control_plane_token(frame["token"])  # not usable against the agent
    with pytest.raises(TokenError):
        HostKey("host-test", secrets.token_bytes(32)).verify_agent_token(frame["token"])
    # The client verifies and decodes them for its caller.
    stream = http.events(after=0)
    got = await anext(stream)
    await stream.aclose()
    assert got == ev
    assert got.contract_body() == {"event": "sandbox.error", "sandbox_id": "cl-abc", "host_id": "host-test",
                                   "timestamp": ev.timestamp}


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        HostKey("h", b"short")
