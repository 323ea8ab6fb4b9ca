"""Every capsule route: API key or session cookie (+ CSRF on writes); another team's capsule is a
404 everywhere, indistinguishable from a capsule that does not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Env

# (method, path under /v1/capsules/{id}, json body or None, files)
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("DELETE", "", None),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("POST", "/ping", None),
    ("GET", "/metrics", None),
    ("POST", "/exec", {"cmd": "true"}),
    ("GET", "/processes", None),
    ("DELETE", "/processes/1", None),
    ("POST", "/files/read", {"path": "/etc/hostname"}),
    ("POST", "/files/stream/read", {"path": "/etc/hostname"}),
    ("POST", "/files/list", {"path": "/"}),
    ("POST", "/files/mkdir", {"path": "/tmp/x"}),
    ("POST", "/files/remove", {"path": "/tmp/x"}),
    ("POST", "/files/write", "multipart"),
    ("POST", "/files/stream/write", "multipart"),
]


async def _call(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    if body == "multipart":
        return await client.request(method, url, data={"path": "/tmp/x"}, files={"file": ("x", b"x")})
    return await client.request(method, url, json=body)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_other_team_gets_404(other: httpx.AsyncClient, api: httpx.AsyncClient, shared_capsule: str,
                                   method: str, path: str, body: Any) -> None:
    r = await _call(other, method, f"/v1/capsules/{shared_capsule}{path}", body)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    missing = await _call(other, method, f"/v1/capsules/cl-000000000000{path}", body)
    assert missing.json()["error"]["message"].replace("cl-000000000000", "X") == \
        r.json()["error"]["message"].replace(shared_capsule, "X")
    # ...and the capsule is untouched
    assert (await api.get(f"/v1/capsules/{shared_capsule}")).json()["status"] == "running"


async def test_lists_are_per_team(env: Env, api: httpx.AsyncClient, other: httpx.AsyncClient,
                                  shared_capsule: str) -> None:
    assert shared_capsule in {c["id"] for c in (await api.get("/v1/capsules")).json()}
    assert shared_capsule not in {c["id"] for c in (await other.get("/v1/capsules")).json()}
    r = await other.post("/v1/snapshots", json={"sandbox_id": shared_capsule})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_no_credentials_401(env: Env, shared_capsule: str, method: str, path: str, body: Any) -> None:
    async with env.client() as anonymous:
        r = await _call(anonymous, method, f"/v1/capsules/{shared_capsule}{path}", body)
        assert r.status_code == 401, r.text
        bad = anonymous.headers.copy()
        bad["X-API-Key"] = "wrn_" + "f" * 32
        r = await anonymous.request(method, f"/v1/capsules/{shared_capsule}{path}", headers=bad,
                                    json=None if body == "multipart" else body)
        assert r.status_code == 401, r.text


async def test_collection_routes_need_credentials(env: Env) -> None:
    async with env.client() as anonymous:
        for method, url in [("GET", "/v1/capsules"), ("POST", "/v1/capsules"), ("GET", "/v1/capsules/stats"),
                            ("GET", "/v1/capsules/usage"), ("GET", "/v1/snapshots"), ("POST", "/v1/snapshots"),
                            ("DELETE", "/v1/snapshots/x")]:
            r = await anonymous.request(method, url, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, url, r.text)


async def test_session_cookie_and_csrf(env: Env, shared_capsule: str) -> None:
    async with env.session_client(env.a) as browser:
        assert (await browser.get(f"/v1/capsules/{shared_capsule}")).status_code == 200
        r = await browser.post(f"/v1/capsules/{shared_capsule}/exec", json={"cmd": "echo", "args": ["hi"]})
        assert r.status_code == 200 and r.json()["stdout"] == "hi\n"
    async with env.session_client(env.a, with_csrf=False) as no_csrf:
        assert (await no_csrf.get("/v1/capsules")).status_code == 200  # reads need no CSRF
        r = await no_csrf.post(f"/v1/capsules/{shared_capsule}/exec", json={"cmd": "true"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        r = await no_csrf.post("/v1/capsules", json={})
        assert r.status_code == 403
