"""What `/init` sets: the access token, environment variables, default user and workdir."""

from __future__ import annotations

import binascii
import time

# hmac's own fallback; `import hmac` (or secrets) would load OpenSSL's libcrypto into every envd.
from _operator import _compare_digest

from .connect import RpcError, b64decode, b64encode
from .users import User, lookup_user

try:  # the builtin module, not hashlib: that would load OpenSSL's libcrypto into every envd
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python 3.12+
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLOCK_SET_THRESHOLD = 1.0  # seconds of skew before envd sets the system clock


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch for `2026-01-02T03:04:05.123456789Z` or with a +hh:mm offset."""
    try:
        date, _, rest = text.partition("T")
        year, month, day = (int(x) for x in date.split("-"))
        offset = 0
        if rest.endswith(("Z", "z")):
            rest = rest[:-1]
        elif len(rest) > 6 and rest[-6] in "+-" and rest[-3] == ":":
            sign = 1 if rest[-6] == "+" else -1
            offset = sign * (int(rest[-5:-3]) * 3600 + int(rest[-2:]) * 60)
            rest = rest[:-6]
        clock, _, fraction = rest.partition(".")
        hour, minute, second = (int(x) for x in clock.split(":"))
        frac = float("0." + fraction) if fraction else 0.0
    except ValueError:
        raise RpcError("invalid_argument", f"timestamp {text!r} is not RFC 3339") from None
    # Days from civil (Howard Hinnant's algorithm), to avoid importing datetime/calendar.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second + frac - offset


class AgentState:
    def __init__(self, access_token: str | None = None) -> None:
        self.access_token = access_token or None
        self.env_vars: dict[str, str] = {}
        self.default_user: str | None = None
        self.default_workdir: str | None = None
        self.started_at = time.time()

    def check_token(self, presented: str | None) -> bool:
        if self.access_token is None:
            return True
        if presented is None:
            return False
        return _compare_digest(presented.encode(), self.access_token.encode())

    def check_signature(self, query: dict[str, str], operation: str) -> bool:
        """E2B's signed file URL (`/files?...&signature=v1_...[&signature_expiration=T]`), standing in
        for the token: base64(sha256("path:operation:username:token[:expiration]")), unpadded."""
        signature = query.get("signature")
        if self.access_token is None or not signature or not signature.startswith("v1_"):
            return False
        raw = f"{query.get('path', '')}:{operation}:{query.get('username', '')}:{self.access_token}"
        expiration = query.get("signature_expiration")
        if expiration is not None:
            if not expiration.isdigit() or int(expiration) < time.time():
                return False
            raw += f":{expiration}"
        expected = "v1_" + b64encode(_sha256(raw.encode()).digest()).decode().rstrip("=")
        return _compare_digest(signature.encode(), expected.encode())

    def apply_init(self, body: dict[str, Any]) -> None:
        env_vars = body.get("envVars") or {}
        if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
        ):
            raise RpcError("invalid_argument", "envVars must map strings to strings")
        user = body.get("defaultUser")
        if user:
            lookup_user(str(user))
        workdir = body.get("defaultWorkdir")
        timestamp = body.get("timestamp")
        when = parse_rfc3339(str(timestamp)) if timestamp else None
        token = body.get("accessToken")
        if token is not None and not isinstance(token, str):
            raise RpcError("invalid_argument", "accessToken must be a string")
        # Validated: now apply.
        self.env_vars.update(env_vars)
        if user:
            self.default_user = str(user)
        if workdir:
            self.default_workdir = str(workdir)
        if token:
            self.access_token = token
        if when is not None and abs(time.time() - when) > CLOCK_SET_THRESHOLD:
            try:
                time.clock_settime(time.CLOCK_REALTIME, when)
            except OSError as exc:
                raise RpcError("permission_denied", f"cannot set the clock: {exc.strerror}") from None

    def request_user(self, authorization: str | None) -> User:
        """The user a call acts as: `Authorization: Basic base64(user:)`, else the default."""
        name = None
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = b64decode(authorization[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise RpcError("invalid_argument", "malformed Authorization header") from None
            name = decoded.partition(":")[0] or None
        return lookup_user(name or self.default_user or "root")

    def user_for(self, username: str | None, authorization: str | None) -> User:
        if username:
            return lookup_user(username)
        return self.request_user(authorization)

