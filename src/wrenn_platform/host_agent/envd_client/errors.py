"""envd's failures as `EnvdError`s carrying a Connect code, from responses and from the transport."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from .transport import TransportBroken, TransportTimeout


class EnvdError(Exception):
    """A call envd refused or could not complete. `code` is a Connect code (`not_found`, ...)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class EnvdUnavailable(EnvdError):
    """envd could not be reached (connection refused, reset, timed out), or a stream from it broke.
    `sent` is False when the request certainly never reached envd."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__("unavailable", message)
        self.sent = sent


# /files and the plain HTTP paths answer errors with an HTTP status only.
_CODES_BY_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    412: "failed_precondition",
    507: "resource_exhausted",
}


def error_from_response(status: int, body: bytes) -> EnvdError:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    code = data.get("code") if isinstance(data, dict) else None
    message = data.get("message", "") if isinstance(data, dict) else ""
    if not isinstance(code, str):
        code = _CODES_BY_STATUS.get(status, "internal" if status >= 500 else "unknown")
    return EnvdError(code, message or body.decode(errors="replace")[:200], status)


def error_from_end(error: dict[str, object]) -> EnvdError:
    """The error of a stream's end-of-stream message."""
    return EnvdError(str(error.get("code", "unknown")), str(error.get("message", "")))


@contextlib.contextmanager
def transport_errors(base_url: str, doing: str = "cannot reach envd at") -> Iterator[None]:
    """Transport failures as EnvdErrors: a timeout is `deadline_exceeded`, a broken or refused
    connection `unavailable`."""
    try:
        yield
    except TransportTimeout as exc:
        raise EnvdError("deadline_exceeded", f"envd at {base_url} did not answer in time ({exc})") from exc
    except TransportBroken as exc:
        raise EnvdUnavailable(f"{doing} {base_url}: {exc}", sent=exc.sent) from exc
