"""Secrets: generation, hashing at rest, constant-time comparison. The one place for all three."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_password_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

API_KEY_PREFIX = "wrn_"


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same time as a real check so a missing password is not observable.
        _password_hasher.hash(password)
        return False
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_off_loop(password: str) -> str:
    """`hash_password` in a worker thread: argon2 takes a large fraction of a second of CPU (it
    releases the GIL), which must not stall every other request on the event loop."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_token() -> str:
    """A random URL-safe secret (session ids, CSRF tokens, single-use links)."""
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return (plaintext key, display prefix). The plaintext is shown once and never stored."""
    key = API_KEY_PREFIX + secrets.token_hex(16)
    return key, key[: len(API_KEY_PREFIX) + 8] + "..."


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
