"""Helpers for identity tests: read the outbox, sign up and activate through the API."""

from __future__ import annotations

import email
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import httpx
from fastapi import FastAPI

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER
from wrenn_platform.control_plane.settings import Settings

from ..conftest import make_client

PASSWORD = "s3cret-passw0rd"
_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_\-%.~]+)")


def outbox(settings: Settings) -> list[EmailMessage]:
    directory = settings.data_dir / "outbox"
    if not directory.exists():
        return []
    return [_parse(path) for path in sorted(directory.glob("*.eml"))]


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def messages_to(settings: Settings, address: str) -> list[EmailMessage]:
    return [m for m in outbox(settings) if m["To"] == address]


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def token_in(message: EmailMessage) -> str:
    match = _TOKEN.search(body_of(message))
    assert match, body_of(message)
    return match.group(1)


def new_email() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


@dataclass
class Account:
    email: str
    password: str
    user_id: str
    team_id: str
    client: httpx.AsyncClient  # logged in, CSRF header set


def use_csrf(client: httpx.AsyncClient) -> None:
    """Echo the CSRF cookie in the header, as the SPA does."""
    client.headers[CSRF_HEADER] = client.cookies[CSRF_COOKIE]


async def signup(
    client: httpx.AsyncClient, address: str, password: str = PASSWORD, name: str = "Ada"
) -> httpx.Response:
    return await client.post("/v1/auth/signup", json={"email": address, "password": password, "name": name})


async def register(app: FastAPI, settings: Settings, address: str | None = None, name: str = "Ada") -> Account:
    """Sign up, take the activation link from the outbox, activate: a logged-in account."""
    address = address or new_email()
    client = make_client(app)
    response = await signup(client, address, name=name)
    assert response.status_code == 201, response.text
    token = token_in(messages_to(settings, address)[-1])
    activated = await client.post("/v1/auth/activate", json={"token": token})
    assert activated.status_code == 200, activated.text
    use_csrf(client)
    body = activated.json()
    return Account(address, PASSWORD, body["user_id"], body["team_id"], client)
