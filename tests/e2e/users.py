"""Accounts on a `wrenn server` process made the way a user makes them: sign up, follow the
activation link the server wrote to its outbox (`DATA_DIR/outbox/*.eml`), log in, make an API key."""

from __future__ import annotations

import re
import secrets
from email import message_from_bytes

import httpx

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE

from .conftest import Shipped

_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_\-%.~]+)")


def log_in(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    login = http.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    sid, csrf = login.cookies[SESSION_COOKIE], login.cookies[CSRF_COOKIE]
    return {"Cookie": f"{SESSION_COOKIE}={sid}; {CSRF_COOKIE}={csrf}", CSRF_HEADER: csrf}


def sign_up(shipped: Shipped, http: httpx.Client) -> tuple[str, str, str]:
    """A user made through signup and the activation link in the outbox: (email, password, user id)."""
    email, password = f"user-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    resp = http.post("/v1/auth/signup", json={"email": email, "password": password, "name": "matrix"})
    assert resp.status_code == 201, resp.text
    outbox = shipped.server.data_dir / "outbox"
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes())
        if message["To"] == email:
            body = message.get_payload(decode=True) if not message.is_multipart() else \
                message.get_payload(0).get_payload(decode=True)  # type: ignore[union-attr]
            token = _TOKEN.search(bytes(body).decode()).group(1)  # type: ignore[union-attr]
            break
    else:
        raise AssertionError(f"no activation email for {email}")
    activated = http.post("/v1/auth/activate", json={"token": token})
    assert activated.status_code == 200, activated.text
    return email, password, activated.json()["user_id"]


def new_key(http: httpx.Client, session: dict[str, str]) -> str:
    resp = http.post("/v1/api-keys", json={"name": "matrix"}, headers=session)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])
