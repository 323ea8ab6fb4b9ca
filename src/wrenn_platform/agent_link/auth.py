"""Signed, short-lived tokens between the control plane and a host agent, in both directions.

Both sides hold the host's secret (at least 32 random bytes; `wrenn agent --secret-file`). Every
request carries `Authorization: Bearer <JWT>`, HS256 over that secret, with claims:

- `iss` — who signed: `wrenn-control-plane` or `wrenn-agent`;
- `aud` — who may accept it: the other one. A token can therefore not be reflected back to its
  signer: the agent accepts only `iss=wrenn-control-plane, aud=wrenn-agent`, and the control plane
  verifies what the agent sends it (event posts, event-stream frames) with the reverse pair;
- `sub` — the host id, so a secret shared by mistake between hosts still cannot cross them;
- `iat`, `exp` — lifetime `TOKEN_TTL_S` (60 s), 5 s leeway for clock skew;
- `msg` — optional: a message the signer vouches for. The agent's event stream sends each event as
  such a token, so the control plane verifies events the same way whether they arrive over the
  `/v1/events` WebSocket it opened or in a POST the agent makes to it.

The signer makes a fresh token per request (cheap: one HMAC), so a leaked token is worth a
minute.

Where the secret comes from: an agent that joins a control plane (`wrenn agent --control-plane URL
--registration-token TOKEN`) derives it from its one-time registration token
(`key_from_registration_token`); the control plane derives the same key when that token is
presented at `POST /v1/hosts/register` and keeps it sealed in the host's record, so every replica
can reach every host and no secret crosses the wire beyond the registration call itself. Without a
control plane, operators place the same secret file on both sides (`--secret-file`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

CONTROL_PLANE = "wrenn-control-plane"
AGENT = "wrenn-agent"
TOKEN_TTL_S = 60
LEEWAY_S = 5
MIN_SECRET_BYTES = 32


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class HostKey:
    host_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"host secret must be at least {MIN_SECRET_BYTES} bytes")

    def sign(self, issuer: str, audience: str, extra: dict[str, object] | None = None,
             ttl_s: int = TOKEN_TTL_S) -> str:
        now = int(time.time())
        claims = {**(extra or {}), "iss": issuer, "aud": audience, "sub": self.host_id,
                  "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str, issuer: str, audience: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        if claims.get("sub") != self.host_id:
            raise TokenError("token is for another host")
        if int(claims["exp"]) - int(claims["iat"]) > TOKEN_TTL_S * 10:  # type: ignore[call-overload]
            raise TokenError("token lifetime too long")
        return claims

    # The two directions, named so call sites cannot mix them up.
    def control_plane_token(self) -> str:
        return self.sign(CONTROL_PLANE, AGENT)

    def verify_control_plane_token(self, token: str) -> dict[str, object]:
        return self.verify(token, CONTROL_PLANE, AGENT)

    def agent_token(self, payload: dict[str, object] | None = None) -> str:
        """A token from the agent; `payload` (e.g. an event) rides inside it as claim `msg`, so
        whatever the agent sends can be verified, whichever channel carried it."""
        return self.sign(AGENT, CONTROL_PLANE, {"msg": payload} if payload is not None else None)

    def verify_agent_token(self, token: str) -> dict[str, object]:
        return self.verify(token, AGENT, CONTROL_PLANE)


def key_from_registration_token(registration_token: str) -> bytes:
    """The host's secret, derived from its registration token (64 hex characters)."""
    return hmac.new(registration_token.encode(), b"wrenn host agent key v1", hashlib.sha256).hexdigest().encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def load_secret(path: Path) -> bytes:
    data = path.read_bytes().strip()
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: secret shorter than {MIN_SECRET_BYTES} bytes")
    return data


def create_secret_file(path: Path) -> bytes:
    """Write a fresh secret (hex, 64 bytes of text) readable by root only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
    return data
