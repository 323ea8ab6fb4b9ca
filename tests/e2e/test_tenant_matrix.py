"""The tenant matrix: every operation the server describes in its own `/openapi.json`, tried with
team A's real resource ids (capsule, snapshot, API key, channel, member, BYOC host, session, user)
by everyone who must be refused: no credentials, team B's API key, team B's session, and each
role of team A below the one the operation requires. Each attempt must be refused (401 without
credentials, 401/403/404 otherwise, as the contract answers) and no body or stream may carry any
of team A's data. Team B's own listings (its capsules, keys, events ...) must carry none either.

The whole matrix runs in `make test` (a few seconds once the capsule is up); its count is printed
and recorded in SECURITY.md: `.venv/bin/python -m pytest tests/e2e/test_tenant_matrix.py -q -s`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE

from ..server_process import Account
from .conftest import Shipped, create_running
from .users import log_in, new_key, sign_up

REFUSED = {401, 403, 404}
METHODS = ("get", "post", "put", "patch", "delete")

# The role each operation requires above plain membership (the contract's descriptions and
# `permissions.py`); everything under /v1/admin/ requires a platform admin.
TEAM_ADMIN_OPS = {("patch", "/v1/teams/{id}"), ("post", "/v1/teams/{id}/members"),
                  ("patch", "/v1/teams/{id}/members/{uid}"), ("delete", "/v1/teams/{id}/members/{uid}"),
                  ("post", "/v1/hosts/{id}/tags"), ("delete", "/v1/hosts/{id}/tags/{tag}"),
                  ("post", "/v1/hosts/{id}/token")}
TEAM_OWNER_OPS = {("delete", "/v1/teams/{id}")}


@dataclass
class Caller:
    """One set of credentials: an API key, a session (cookie + CSRF header), or nothing."""
    label: str
    headers: dict[str, str] = field(default_factory=dict)
    is_session: bool = False
    is_key: bool = False


@dataclass
class World:
    shipped: Shipped
    ids: dict[str, str]  # path parameter / body field → team A's real value
    secrets: set[str]  # strings of team A's that no refused answer and no team-B listing may carry
    outsiders: list[Caller]
    member: list[Caller]  # team A's plain member (session, key)
    team_admin: list[Caller]  # team A's admin (session, key)


def _in_team(http: httpx.Client, session: dict[str, str], team_id: str) -> dict[str, str]:
    """The session switched to `team_id` (a fresh cookie scoped to it)."""
    resp = http.post("/v1/auth/switch-team", json={"team_id": team_id}, headers=session)
    assert resp.status_code == 200, resp.text
    sid, csrf = resp.cookies.get(SESSION_COOKIE), resp.cookies.get(CSRF_COOKIE)
    if sid is None:  # the same session re-scoped
        return session
    return {"Cookie": f"{SESSION_COOKIE}={sid}; {CSRF_COOKIE}={csrf}", CSRF_HEADER: csrf or ""}


@pytest.fixture(scope="module")
def world(shipped: Shipped) -> Iterator[World]:
    owner: Account = shipped.account  # team A's owner
    with httpx.Client(base_url=shipped.url, timeout=120) as http:
        a_session = log_in(http, owner.email, owner.password)
        with shipped.client() as api:
            capsule = create_running(api)
            snapshot = api.post("/v1/snapshots", json={"sandbox_id": capsule["id"], "name": "matrix-snap"})
            assert snapshot.status_code == 201, snapshot.text
            capsule = create_running(api)  # the snapshot took the first one
            exec_ = api.post(f"/v1/capsules/{capsule['id']}/exec",
                             json={"cmd": "/bin/sh", "args": ["-c", "echo a-secret > /tmp/a-secret; sleep 600"],
                                   "background": True})
            assert exec_.status_code in (200, 202), exec_.text
        channel = http.post("/v1/channels", json={"name": "matrix", "provider": "webhook",
                                                  "config": {"url": "https://example.com/hook"},
                                                  "events": ["capsule.create"]}, headers=a_session)
        assert channel.status_code == 201, channel.text
        byoc = http.put(f"/v1/admin/teams/{owner.team_id}/byoc", json={"byoc": True}, headers=a_session)
        assert byoc.status_code == 204, byoc.text
        host = http.post("/v1/hosts", json={"type": "byoc", "team_id": owner.team_id}, headers=a_session)
        assert host.status_code == 201, host.text
        keys = http.get("/v1/api-keys", headers=a_session).json()
        sessions = http.get("/v1/me/sessions", headers=a_session).json()
        users = http.get("/v1/admin/users", headers=a_session).json()
        owner_id = next(u["id"] for u in users if u["email"] == owner.email)

        members: dict[str, list[Caller]] = {}
        member_ids: dict[str, str] = {}
        for role in ("member", "admin"):
            email, password, uid = sign_up(shipped, http)
            added = http.post(f"/v1/teams/{owner.team_id}/members", json={"email": email}, headers=a_session)
            assert added.status_code == 201, added.text
            if role == "admin":
                promoted = http.patch(f"/v1/teams/{owner.team_id}/members/{uid}", json={"role": "admin"},
                                      headers=a_session)
                assert promoted.status_code == 204, promoted.text
            session = _in_team(http, log_in(http, email, password), owner.team_id)
            members[role] = [Caller(f"team A {role} session", session, is_session=True),
                             Caller(f"team A {role} key", {"X-API-Key": new_key(http, session)}, is_key=True)]
            member_ids[role] = uid

        b_email, b_password, _ = sign_up(shipped, http)
        b_session = log_in(http, b_email, b_password)
        b_key = new_key(http, b_session)

    ids = {"capsule": capsule["id"], "snapshot": "matrix-snap", "api_key": keys[0]["id"],
           "channel": channel.json()["id"], "host": host.json()["host"]["id"], "team": owner.team_id,
           "user": owner_id, "session": sessions["sessions"][0]["id"],
           "member": member_ids["admin"]}
    leak = {capsule["id"], channel.json()["id"], host.json()["host"]["id"], owner.team_id, owner.email,
            owner.api_key, keys[0]["id"], "matrix-snap", "a-secret", "https://example.com/hook"}
    outsiders = [Caller("no credentials"), Caller("team B key", {"X-API-Key": b_key}, is_key=True),
                 Caller("team B session", b_session, is_session=True)]
    yield World(shipped, ids, leak, outsiders, members["member"], members["admin"])


def _path_value(world: World, path: str, name: str) -> str:
    ids = world.ids
    if name == "id":
        for prefix, key in (("/v1/capsules/", "capsule"), ("/v1/admin/capsules/", "capsule"),
                            ("/v1/api-keys/", "api_key"), ("/v1/channels/", "channel"), ("/v1/hosts/", "host"),
                            ("/v1/teams/", "team"), ("/v1/admin/teams/", "team"), ("/v1/admin/users/", "user"),
                            ("/v1/me/sessions/", "session")):
            if path.startswith(prefix):
                return ids[key]
        return "build-" + secrets.token_hex(4)  # builds: the role check comes before any lookup
    return {"uid": ids["member"], "name": ids["snapshot"], "selector": "1", "tag": "gpu",
            "provider": "github"}.get(name, "x")


def _names_a_foreign_resource(path: str) -> bool:
    return "{" in path and not path.startswith(("/v1/me/providers", "/auth/oauth"))


BODY_VALUES: dict[str, Any] = {"sandbox_id": "capsule", "team_id": "team", "capsule_id": "capsule"}


def _body(world: World, op: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(json, multipart files) good enough to pass validation, naming team A's ids where it can."""
    content = op.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        return None, {"path": (None, "/tmp/a-secret"), "file": ("f", b"overwritten")}
    if "application/json" not in content:
        return None, None
    body: dict[str, Any] = {"path": "/tmp/a-secret", "cmd": "/bin/cat", "args": ["/tmp/a-secret"],
                            "name": "matrix_x", "type": "byoc", "role": "member", "email": "someone@example.com",
                            "admin": True, "active": False, "byoc": False, "tag": "gpu", "config": {},
                            "events": ["capsule.create"], "provider": "webhook", "template": "minimal"}
    body.update({k: world.ids[v] for k, v in BODY_VALUES.items()})
    return body, None


def _operations(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    doc = httpx.get(f"{world.shipped.url}/openapi.json", timeout=30).json()
    ops = []
    for path, item in doc["paths"].items():
        if not path.startswith(("/v1/", "/auth/")):
            continue
        for method in METHODS:
            if method in item:
                op = item[method]
                schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
                if isinstance(schema, dict) and "$ref" in schema:
                    schema.update(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
                ops.append((method, path, op))
    return ops


def _is_public(path: str, method: str) -> bool:
    return path in {"/v1/auth/signup", "/v1/auth/activate", "/v1/auth/login", "/v1/me/password/reset",
                    "/v1/me/password/reset/confirm", "/v1/hosts/register", "/v1/hosts/auth/refresh"} \
        or path.startswith("/auth/oauth/")


def _is_socket(op: dict[str, Any]) -> bool:
    return "101" in op.get("responses", {})


def _attempt(world: World, caller: Caller, method: str, path: str, op: dict[str, Any]) -> tuple[int, str, str]:
    """(status, what came back, what was sent) — an id the caller sent may come back in a 404's message."""
    sent = _sent(world, path, op)
    url_path = re.sub(r"\{(\w+)\}", lambda m: _path_value(world, path, m.group(1)), path)
    if _is_socket(op):
        ws_url = world.shipped.url.replace("http://", "ws://") + url_path
        try:
            with connect(ws_url, additional_headers=caller.headers, open_timeout=30) as ws:
                ws.send(json.dumps({"cmd": "/bin/cat", "args": ["/tmp/a-secret"]}))
                received = ""
                try:
                    while True:
                        received += str(ws.recv(timeout=2))
                except (TimeoutError, ConnectionClosed):  # closed or quiet: what came is what we judge
                    pass
                return 101, received, sent
        except InvalidStatus as refused:
            return refused.response.status_code, bytes(refused.response.body or b"").decode(errors="replace"), sent
    json_body, files = _body(world, op)
    headers = dict(caller.headers)
    with httpx.Client(base_url=world.shipped.url, timeout=60) as http:
        if path.endswith("/stream") or path.endswith("/events/stream"):
            try:
                with http.stream(method.upper(), url_path, headers=headers,
                                 timeout=httpx.Timeout(60, read=2)) as resp:
                    text = ""
                    try:
                        for chunk in resp.iter_text():
                            text += chunk
                    except httpx.ReadTimeout:
                        pass
                    return resp.status_code, text, sent
            except httpx.ReadTimeout:
                return 0, "", sent
        resp = http.request(method.upper(), url_path, headers=headers, json=json_body if files is None else None,
                            files=files, params={"force": "true"} if method == "delete" else None)
        return resp.status_code, resp.text, sent


def test_tenant_matrix(world: World) -> None:
    cases = refusals = 0
    failures: list[str] = []
    for method, path, op in _operations(world):
        if _is_public(path, method):
            continue
        foreign = _names_a_foreign_resource(path) or bool(set(BODY_VALUES) & set(
            _schema_fields(op)))
        callers: list[tuple[Caller, bool]] = []
        if foreign or method == "get" or path.startswith("/v1/admin/"):
            callers += [(c, True) for c in world.outsiders]
        else:
            callers.append((world.outsiders[0], True))  # unauthenticated only: B acting on B is not a case
        if path.startswith("/v1/admin/"):
            callers += [(c, False) for c in world.member + world.team_admin if c.is_session]
        elif (method, path) in TEAM_ADMIN_OPS:
            callers += [(c, False) for c in world.member]
        elif (method, path) in TEAM_OWNER_OPS:
            callers += [(c, False) for c in world.member + world.team_admin]
        for caller, outsider in callers:
            cases += 1
            status, body, sent = _attempt(world, caller, method, path, op)
            must_refuse = foreign or not caller.headers or not outsider or path.startswith("/v1/admin/")
            allowed = ({401} if not caller.headers else REFUSED)
            where = f"{method.upper()} {path} as {caller.label}: {status} {body[:200]!r}"
            if must_refuse:
                if status in allowed:
                    refusals += 1
                else:
                    failures.append("not refused: " + where)
            elif status >= 500 or status == 0:
                failures.append("server error: " + where)
            if outsider and caller.headers:
                leaked = sorted(s for s in world.secrets if s in body and s not in sent)
                if leaked:
                    failures.append(f"team A's {leaked} in the answer to {where}")
    print(f"\ntenant matrix: {cases} cases, {refusals} refusals, {len(failures)} failures")
    assert not failures, "\n".join(failures)
    assert cases > 200


def _sent(world: World, path: str, op: dict[str, Any]) -> str:
    url_path = re.sub(r"\{(\w+)\}", lambda m: _path_value(world, path, m.group(1)), path)
    json_body, files = _body(world, op)
    return url_path + json.dumps(json_body) + repr(files)


def _schema_fields(op: dict[str, Any]) -> set[str]:
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = content.get("schema", {})
    return set(schema.get("properties", {})) if isinstance(schema, dict) else set()
