"""`/exec/stream`, `/pty` (reattach by tag) and `/processes/{selector}/stream` over real WebSockets,
message for message as the contract's tables say."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import Env

TIMEOUT = 20


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return msg


async def _until(ws: ClientConnection, kind: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        msg = await _recv(ws)
        if msg["type"] == kind:
            return seen, msg
        seen.append(msg)


def _ws(env: Env, path: str, headers: dict[str, str] | None = None) -> Any:
    return connect(env.server.ws_url + path, additional_headers=headers or env.a.headers(), open_timeout=TIMEOUT)


async def test_exec_stream(env: Env, shared_capsule: str) -> None:
    async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream") as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "sh",
                                  "args": ["-c", "echo one; echo two >&2; echo three; exit 4"]}))
        start = await _recv(ws)
        assert start["type"] == "start" and start["pid"] > 0
        seen, exit_ = await _until(ws, "exit")
        assert exit_ == {"type": "exit", "exit_code": 4}
        out = "".join(m["data"] for m in seen if m["type"] == "stdout")
        err = "".join(m["data"] for m in seen if m["type"] == "stderr")
        assert (out, err) == ("one\nthree\n", "two\n")
        with pytest.raises(ConnectionClosed):  # the server closes after the exit
            await asyncio.wait_for(ws.recv(), TIMEOUT)


async def test_exec_stream_stop(env: Env, shared_capsule: str) -> None:
    async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream") as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "sh", "args": ["-c", "echo ready; sleep 600"]}))
        assert (await _recv(ws))["type"] == "start"
        await _until(ws, "stdout")
        await ws.send(json.dumps({"type": "stop"}))
        _, exit_ = await _until(ws, "exit")
        assert exit_["exit_code"] != 0


async def test_exec_stream_bad_first_message(env: Env, shared_capsule: str) -> None:
    async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream") as ws:
        await ws.send(json.dumps({"type": "start"}))  # no cmd
        msg = await _recv(ws)
        assert msg["type"] == "error" and msg["data"]


async def test_pty_start_input_resize_and_reattach(env: Env, shared_capsule: str) -> None:
    marker = secrets.token_hex(4)
    async with _ws(env, f"/v1/capsules/{shared_capsule}/pty") as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "/bin/sh", "cols": 100, "rows": 30,
                                  "envs": {"TERM": "xterm"}}))
        started = await _recv(ws)
        assert started["type"] == "started" and started["pid"] > 0 and started["tag"]
        tag = started["tag"]
        await ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        await ws.send(json.dumps({"type": "input",
                                  "data": base64.b64encode(f"stty size; echo {marker}-A\n".encode()).decode()}))
        text = ""
        while f"{marker}-A" not in text.replace(f"echo {marker}-A", ""):
            msg = await _recv(ws)
            if msg["type"] == "output":
                text += base64.b64decode(msg["data"]).decode(errors="replace")
        assert "40 120" in text
    # the PTY outlives the socket; reconnect by tag
    async with _ws(env, f"/v1/capsules/{shared_capsule}/pty") as ws:
        await ws.send(json.dumps({"type": "connect", "tag": tag}))
        again = await _recv(ws)
        assert again["type"] == "started" and again["tag"] == tag and again["pid"] == started["pid"]
        await ws.send(json.dumps({"type": "input", "data": base64.b64encode(f"echo {marker}-B\n".encode()).decode()}))
        text = ""
        while f"{marker}-B" not in text.replace(f"echo {marker}-B", ""):
            msg = await _recv(ws)
            if msg["type"] == "output":
                text += base64.b64decode(msg["data"]).decode(errors="replace")
        await ws.send(json.dumps({"type": "kill"}))
        _, exit_ = await _until(ws, "exit")
        assert exit_["type"] == "exit"
    async with _ws(env, f"/v1/capsules/{shared_capsule}/pty") as ws:
        await ws.send(json.dumps({"type": "connect", "tag": "pty-00000000"}))
        msg = await _recv(ws)
        assert msg["type"] == "error" and msg["fatal"] is True


async def test_process_stream_by_tag_and_pid(env: Env, api: httpx.AsyncClient, shared_capsule: str) -> None:
    tag = f"ticker-{secrets.token_hex(3)}"
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec", json={
        "cmd": "sh", "args": ["-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo bad >&2; exit 7"],
        "background": True, "tag": tag})
    assert r.status_code == 202
    pid = r.json()["pid"]
    async with _ws(env, f"/v1/capsules/{shared_capsule}/processes/{tag}/stream") as ws:
        start = await _recv(ws)
        assert start == {"type": "start", "pid": pid}
        seen, exit_ = await _until(ws, "exit")
        assert exit_ == {"type": "exit", "exit_code": 7}
        assert "tick 3" in "".join(m["data"] for m in seen if m["type"] == "stdout")
        assert "bad" in "".join(m["data"] for m in seen if m["type"] == "stderr")
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec", json={
        "cmd": "sh", "args": ["-c", "sleep 0.5; echo by-pid"], "background": True})
    pid2 = r.json()["pid"]
    async with _ws(env, f"/v1/capsules/{shared_capsule}/processes/{pid2}/stream") as ws:
        assert (await _recv(ws)) == {"type": "start", "pid": pid2}
        seen, _ = await _until(ws, "exit")
        assert "by-pid" in "".join(m.get("data", "") for m in seen)
    async with _ws(env, f"/v1/capsules/{shared_capsule}/processes/no-such-tag/stream") as ws:
        msg = await _recv(ws)
        assert msg["type"] == "error"


@pytest.mark.parametrize("path", ["exec/stream", "pty", "processes/x/stream"])
async def test_websocket_denials(env: Env, api: httpx.AsyncClient, shared_capsule: str, path: str) -> None:
    cases = [
        (f"/v1/capsules/{shared_capsule}/{path}", {}, 401),
        (f"/v1/capsules/{shared_capsule}/{path}", {"X-API-Key": "wrn_" + "0" * 32}, 401),
        (f"/v1/capsules/{shared_capsule}/{path}", env.b.headers(), 404),  # another team's capsule
        (f"/v1/capsules/cl-000000000000/{path}", env.a.headers(), 404),
    ]
    for url, headers, status in cases:
        with pytest.raises(InvalidStatus) as info:
            async with connect(env.server.ws_url + url, additional_headers=headers, open_timeout=TIMEOUT):
                pass
        assert info.value.response.status_code == status, (url, headers)
        assert json.loads(info.value.response.body)["error"]["code"]


async def test_websocket_with_session_cookie(env: Env, shared_capsule: str) -> None:
    assert env.a.session_id
    headers = {"Cookie": f"wrenn_sid={env.a.session_id}; wrenn_csrf={env.a.csrf}"}
    async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream", headers=headers) as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "echo", "args": ["cookie"]}))
        seen, _ = await _until(ws, "exit")
        assert "cookie\n" in [m.get("data") for m in seen]


async def test_cookie_websocket_from_another_origin_is_refused(env: Env, shared_capsule: str) -> None:
    """A malicious page's socket carries the tenant's cookie but its own Origin: refused before the
    upgrade. The API's own origin (public URL, or the host the request went to) is accepted, and an
    API-key socket is not judged by Origin (a page cannot attach the key)."""
    cookie = {"Cookie": f"wrenn_sid={env.a.session_id}; wrenn_csrf={env.a.csrf}"}
    for path in ("exec/stream", "pty", "processes/1/stream"):
        for origin in ("http://evil.example", "null", "http://testserver.evil.example"):
            with pytest.raises(InvalidStatus) as info:
                async with _ws(env, f"/v1/capsules/{shared_capsule}/{path}", headers={**cookie, "Origin": origin}):
                    pass
            assert info.value.response.status_code == 403, (path, origin)
            assert json.loads(info.value.response.body)["error"]["code"] == "csrf_failed"
    host = env.server.url.removeprefix("http://")
    for origin in ("http://testserver", f"http://{host}"):
        async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream", headers={**cookie, "Origin": origin}) as ws:
            await ws.send(json.dumps({"type": "start", "cmd": "echo", "args": ["same-origin"]}))
            seen, _ = await _until(ws, "exit")
            assert "same-origin\n" in [m.get("data") for m in seen]
    key = {**env.a.headers(), "Origin": "http://evil.example"}
    async with _ws(env, f"/v1/capsules/{shared_capsule}/exec/stream", headers=key) as ws:
        await ws.send(json.dumps({"type": "start", "cmd": "echo", "args": ["key"]}))
        seen, _ = await _until(ws, "exit")
        assert "key\n" in [m.get("data") for m in seen]


async def test_websocket_409_when_not_running(env: Env, api: httpx.AsyncClient, capsules: Any) -> None:
    from .conftest import wait_status

    cap = await capsules()
    assert (await api.post(f"/v1/capsules/{cap['id']}/pause")).status_code == 202
    await wait_status(api, cap["id"], "paused")
    for path in ("exec/stream", "pty", "processes/1/stream"):
        with pytest.raises(InvalidStatus) as info:
            async with _ws(env, f"/v1/capsules/{cap['id']}/{path}"):
                pass
        assert info.value.response.status_code == 409
