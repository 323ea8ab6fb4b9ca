"""`/v1/admin/capsules*` refusals the tenant routes have too, through the shared guest operations:
404 for no such capsule (also before a WebSocket upgrade), 413 past the upload limit, and for a
stopped capsule 404 on metrics and 409 on guest operations."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from ..capsules.conftest import Env, Tenant, create_running, destroy
from .test_admin_capsules import _ws


async def _ws_status(env: Env, path: str, who: Tenant) -> int:
    with pytest.raises(InvalidStatus) as denied:
        async with _ws(env, path, who):
            pass
    status: int = denied.value.response.status_code
    return status


async def test_admin_refusals(env: Env, admin: httpx.AsyncClient, admin_tenant: Tenant,
                              other: httpx.AsyncClient) -> None:
    missing = "/v1/admin/capsules/cl-000000000000"
    for r in [await admin.post(f"{missing}/exec", json={"cmd": "true"}), await admin.get(f"{missing}/metrics"),
              await admin.get(f"{missing}/processes"), await admin.post(f"{missing}/files/list", json={"path": "/"})]:
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (r.request.url, r.text)
    assert await _ws_status(env, f"{missing}/pty", admin_tenant) == 404

    capsule = (await create_running(other))["id"]
    base = f"/v1/admin/capsules/{capsule}"
    try:
        r = await admin.post(f"{base}/files/write", files={"file": ("big", b"x" * (1024 * 1024 + 4096))},
                             data={"path": "/tmp/big"})  # the test server's limit is 1 MiB
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    finally:
        await destroy(other, capsule)

    r = await admin.get(f"{base}/metrics")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    for r in [await admin.get(f"{base}/processes"),
              await admin.post(f"{base}/files/write", files={"file": ("f", b"x")}, data={"path": "/tmp/f"})]:
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", (r.request.url, r.text)
    assert await _ws_status(env, f"{base}/exec/stream", admin_tenant) == 409
