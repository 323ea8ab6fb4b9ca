"""The emails identity sends, and the page paths their links point at (under `public_url`)."""

from __future__ import annotations

from urllib.parse import quote

ACTIVATE_PATH = "/activate"
RESET_PATH = "/reset-password"


def link(base_url: str, path: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{path}?token={quote(token)}"


def activation(name: str, url: str, ttl_minutes: int) -> tuple[str, str]:
    body = (
        f"Hello {name},\n\n"
        f"Activate your Wrenn account by opening this link within {ttl_minutes} minutes:\n\n{url}\n\n"
        "If you did not sign up, ignore this email.\n"
    )
    return "Activate your Wrenn account", body


def password_reset(name: str, url: str, ttl_minutes: int) -> tuple[str, str]:
    body = (
        f"Hello {name},\n\n"
        f"Set a new Wrenn password by opening this link within {ttl_minutes} minutes:\n\n{url}\n\n"
        "Setting a new password signs you out everywhere. If you did not ask for this, ignore this email.\n"
    )
    return "Reset your Wrenn password", body
