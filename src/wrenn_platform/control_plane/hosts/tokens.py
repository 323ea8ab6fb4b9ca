"""Host credentials: the host JWT (HS256 over the control plane's secret) and the single-use
registration and refresh tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import functools
import os
import time
from datetime import timedelta
from pathlib import Path

import jwt

from ..settings import Settings

HOST_JWT_TTL = timedelta(days=7)
REFRESH_TTL = timedelta(days=60)
REGISTRATION_TTL = timedelta(hours=1)  # the contract: a registration token is valid 1 h
_ISSUER = "wrenn-control-plane"
_AUDIENCE = "wrenn-host"
_SECRET_FILE = "host_jwt_secret"


class HostTokenError(Exception):
    pass


def signing_secret(settings: Settings) -> bytes:
    """`WRENN_SECRET_KEY`, or a random secret kept in DATA_DIR (created on first use, mode 0600)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return _secret_file(settings.data_dir / _SECRET_FILE)


@functools.cache
def _secret_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(32).hex().encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another replica/process won the race
        return path.read_bytes().strip()
    with open(fd, "wb") as f:
        f.write(data)
    return data


def issue_host_jwt(settings: Settings, host_id: str) -> str:
    now = int(time.time())
    claims = {"iss": _ISSUER, "aud": _AUDIENCE, "sub": host_id, "iat": now,
              "exp": now + int(HOST_JWT_TTL.total_seconds())}
    return jwt.encode(claims, signing_secret(settings), algorithm="HS256")


def verify_host_jwt(settings: Settings, token: str) -> str:
    """The host id the token was issued to."""
    try:
        claims = jwt.decode(token, signing_secret(settings), algorithms=["HS256"], audience=_AUDIENCE,
                            issuer=_ISSUER, options={"require": ["exp", "iat", "sub"]})
    except jwt.PyJWTError as exc:
        raise HostTokenError(str(exc)) from exc
    return str(claims["sub"])
