"""A remote host agent's key (see `agent_link/auth.py`), sealed at rest in `hosts.agent_key`.

The key is derived from the host's one-time registration token, both by the agent and, when that
token is presented at register, by the control plane: so the key never travels on its own, and
whoever could register the host (the token's holder) is the only other party that knows it. It is
stored AES-GCM-sealed under a key derived from the control plane's secret (`WRENN_SECRET_KEY`),
bound to the host id, so a database dump alone does not let anyone command the agents.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..settings import Settings
from .tokens import signing_secret

_NONCE = 12


def _aead(settings: Settings) -> AESGCM:
    return AESGCM(hashlib.sha256(b"wrenn host agent keys|" + signing_secret(settings)).digest())


def seal(settings: Settings, host_id: str, key: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return base64.urlsafe_b64encode(nonce + _aead(settings).encrypt(nonce, key, host_id.encode())).decode()


def unseal(settings: Settings, host_id: str, sealed: str) -> bytes:
    raw = base64.urlsafe_b64decode(sealed.encode())
    return _aead(settings).decrypt(raw[:_NONCE], raw[_NONCE:], host_id.encode())
