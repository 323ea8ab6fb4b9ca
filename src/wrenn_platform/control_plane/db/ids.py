"""Prefixed random identifiers (`usr-1a2b3c4d5e6f`): the prefix tells what a bare id names."""

from __future__ import annotations

import secrets

USER = "usr"
TEAM = "team"
SESSION = "ses"
API_KEY = "key"
TOKEN = "tok"
OAUTH_IDENTITY = "oid"
CAPSULE = "cl"
HOST = "host"
TEMPLATE = "tpl"
EVENT = "evt"
AUDIT = "aud"
CHANNEL = "ch"
BUILD = "bld"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def new_team_slug() -> str:
    """Immutable 12-hex-char slug shown as `a1b2c3-d1e2f3`."""
    raw = secrets.token_hex(6)
    return f"{raw[:6]}-{raw[6:]}"
