"""Channel configs (webhook URLs, bot tokens, secrets) are Fernet-encrypted at rest.

The key is derived from the control plane's secret (`WRENN_SECRET_KEY`, or the one generated into
DATA_DIR: `hosts.tokens.signing_secret`), so there is one secret to keep and back up.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet

from ..hosts.tokens import signing_secret
from ..settings import Settings


def _fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(b"wrenn channel config v1\0" + signing_secret(settings)).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_config(settings: Settings, config: dict[str, str]) -> str:
    return _fernet(settings).encrypt(json.dumps(config, sort_keys=True).encode()).decode()


def decrypt_config(settings: Settings, token: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(_fernet(settings).decrypt(token.encode()))
    return data
