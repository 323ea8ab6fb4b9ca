"""E2B's `AsyncSandbox` from the published client, and E2B's REST API answering bad requests the
way E2B does (`{"code", "message"}`, its status codes), another team's sandbox a 404."""

from __future__ import annotations

import httpx
import pytest

from ..e2e.conftest import Shipped
from ..server_process import create_account
from .e2b_client import E2bClient

pytestmark = pytest.mark.root


def test_async_sandbox(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import asyncio
        from e2b import AsyncSandbox, PtySize

        async def main():
            sbx = await AsyncSandbox.create(timeout=300, metadata={"kind": "async"})
            ran = await sbx.commands.run("echo async; whoami")
            background = await sbx.commands.run("sleep 600", background=True)
            pids = [p.pid for p in await sbx.commands.list()]
            await sbx.files.write("/home/user/a.txt", "from async")
            text = await sbx.files.read("/home/user/a.txt")
            listed = [e.name for e in await sbx.files.list("/home/user")]
            events = []
            handle = await sbx.files.watch_dir("/home/user", on_event=lambda e: events.append((e.name, e.type.value)))
            await sbx.files.write("/home/user/watched.txt", "w")
            for _ in range(50):
                if ("watched.txt", "create") in events:
                    break
                await asyncio.sleep(0.1)
            await handle.stop()
            out = []
            term = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=out.append)
            await sbx.pty.send_stdin(term.pid, b"echo pty-$((6*7)); exit\\n")
            await term.wait()
            info = await sbx.get_info()
            paused = await sbx.pause()
            back = await AsyncSandbox.connect(sbx.sandbox_id)
            after = (await back.commands.run("cat /home/user/a.txt")).stdout
            killed = await back.kill()
            return dict(stdout=ran.stdout, background=background.pid in pids, text=text,
                        listed="a.txt" in listed, events=events, pty=b"".join(out).decode(errors="replace"),
                        metadata=info.metadata.get("kind"), paused=paused, after=after, killed=killed,
                        running=await back.is_running())

        emit(**asyncio.run(main()))
    """)
    assert seen["stdout"] == "async\nuser\n" and seen["background"] is True
    assert seen["text"] == "from async" and seen["listed"] is True
    assert ["watched.txt", "create"] in seen["events"]
    assert "pty-42" in seen["pty"]
    assert seen["metadata"] == "async"
    assert seen["paused"] is True and seen["after"] == "from async"
    assert seen["killed"] is True and seen["running"] is False


def _e2b_error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"code", "message"} and body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


def test_rest_errors_are_e2b_shaped_and_teams_are_apart(shipped: Shipped, e2b: E2bClient) -> None:
    other_key = create_account(shipped.server).api_key
    with httpx.Client(base_url=shipped.url, timeout=120) as http:
        assert "X-API-KEY" in _e2b_error(http.get("/v2/sandboxes"), 401)
        _e2b_error(http.get("/v2/sandboxes", headers={"X-API-KEY": "wrn_nope"}), 401)
        mine = {"X-API-KEY": e2b.api_key}
        assert "templateID" in _e2b_error(http.post("/v2/sandboxes", json={"timeout": 5}, headers=mine), 400)
        _e2b_error(http.post("/v2/sandboxes", content=b"{", headers={**mine, "Content-Type": "application/json"}),
                   400)
        _e2b_error(http.post("/v2/sandboxes", json={"templateID": "base", "timeout": -1}, headers=mine), 400)
        _e2b_error(http.get("/v2/sandboxes", params={"state": "sleeping"}, headers=mine), 400)
        _e2b_error(http.get("/v2/sandboxes", params={"nextToken": "!!"}, headers=mine), 400)
        _e2b_error(http.get("/sandboxes/cl-missing", headers=mine), 404)
        _e2b_error(http.delete("/sandboxes/cl-missing", headers=mine), 404)
        _e2b_error(http.post("/sandboxes/cl-missing/timeout", json={"timeout": 5}, headers=mine), 404)
        _e2b_error(http.delete("/templates/no-such-snapshot", headers=mine), 404)
        unknown = http.post("/v2/sandboxes", json={"templateID": "no-such-template"}, headers=mine)
        assert "no-such-template" in _e2b_error(unknown, 404)

        created = http.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60}, headers=mine)
        assert created.status_code == 201, created.text
        sandbox = created.json()
        assert set(sandbox) >= {"sandboxID", "templateID", "clientID", "envdVersion", "envdAccessToken", "domain"}
        theirs = {"X-API-KEY": other_key}
        sid = sandbox["sandboxID"]
        _e2b_error(http.get(f"/sandboxes/{sid}", headers=theirs), 404)
        _e2b_error(http.delete(f"/sandboxes/{sid}", headers=theirs), 404)
        _e2b_error(http.post(f"/sandboxes/{sid}/pause", headers=theirs), 404)
        _e2b_error(http.post(f"/v2/sandboxes/{sid}/connect", json={}, headers=theirs), 404)
        assert http.get("/v2/sandboxes", headers=theirs).json() == []
        # envd through E2B_SANDBOX_URL: the sandbox's token is checked by envd itself
        routed = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
        assert http.get("/health", headers=routed).status_code == 204
        assert http.get("/envs", headers=routed).status_code == 401
        assert http.get("/envs", headers={**routed, "X-Access-Token": sandbox["envdAccessToken"]}).status_code == 200
        # the host form `{port}-{sandboxID}.{domain}` the client uses without E2B_SANDBOX_URL
        assert sandbox["domain"] == f"localhost:{shipped.server.port}"
        by_host = {"Host": f"49983-{sid}.{sandbox['domain']}", "X-Access-Token": sandbox["envdAccessToken"]}
        assert http.get("/envs", headers=by_host).status_code == 200
        assert http.get("/envs", headers={"Host": by_host["Host"]}).status_code == 401
        assert http.delete(f"/sandboxes/{sid}", headers=mine).status_code == 204
        gone = http.get("/health", headers=routed)
        assert "was not found" in _e2b_error(gone, 502)  # what E2B's client reads as "not running"
