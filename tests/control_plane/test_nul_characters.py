"""A NUL character (U+0000) in any text a request carries is the caller's error: PostgreSQL stores
none in text (it raised a 500), SQLite does. On both backends it answers a 4xx, never a 5xx."""

from __future__ import annotations

from .conftest import UserFactory

CASES = [
    ("POST", "/v1/api-keys", {"name": "a\x00b"}),
    ("PATCH", "/v1/me", {"name": "a\x00b"}),
    ("POST", "/v1/auth/login", {"email": "a\x00@b.co", "password": "x\x00"}),
    ("POST", "/v1/auth/signup", {"email": "nul@b.co", "password": "x\x00xxxxxxxx", "name": "a\x00"}),
    ("POST", "/v1/snapshots", {"sandbox_id": "cl-\x00"}),
    ("GET", "/v1/capsules/cl-%00abc", None),
    ("GET", "/v1/audit-logs?cursor=%00", None),
]


async def test_nul_characters_never_reach_a_5xx(make_user: UserFactory, backend: str) -> None:
    user = await make_user()
    for method, path, body in CASES:
        response = await user.client.request(method, path, json=body)
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid_request"
    if backend == "postgres":  # where the database itself refuses it: one clear message
        response = await user.client.post("/v1/api-keys", json={"name": "a\x00b"})
        assert response.status_code == 400 and "NUL" in response.json()["error"]["message"]
