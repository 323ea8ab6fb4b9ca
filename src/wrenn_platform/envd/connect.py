"""Connect RPC, JSON codec: error codes, envelopes, and the unary / server-streaming shapes."""

from __future__ import annotations

import binascii
import errno
import struct

from .httpio import BadRequest, Request, Response
from .protocol import CONNECT_JSON, CONNECT_RAW_OUTPUT, END_STREAM

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# Connect code -> HTTP status, for unary errors.
HTTP_STATUS = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}


class RpcError(Exception):
    """An error with a Connect code; every handler failure the client should see is one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


_ERRNO_CODES = {
    errno.ENOENT: "not_found",
    errno.ENOTDIR: "invalid_argument",
    errno.EISDIR: "invalid_argument",
    errno.EEXIST: "already_exists",
    errno.ENOTEMPTY: "failed_precondition",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EROFS: "permission_denied",
    errno.ENOSPC: "resource_exhausted",
    errno.EDQUOT: "resource_exhausted",
    errno.EFBIG: "resource_exhausted",
    errno.ENAMETOOLONG: "invalid_argument",
    errno.ELOOP: "invalid_argument",
    errno.EXDEV: "failed_precondition",
    errno.EINVAL: "invalid_argument",
}


def from_os_error(exc: OSError, what: str = "") -> RpcError:
    code = _ERRNO_CODES.get(exc.errno or 0, "internal")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "not enough disk space"
    subject = what or exc.filename or ""
    return RpcError(code, f"{subject}: {reason}" if subject else reason)


def b64decode(text: str) -> bytes:
    """`base64.b64decode(text, validate=True)` without the `base64` module (it imports `re`).
    Raises binascii.Error (a ValueError) for anything that is not strict base64."""
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise binascii.Error("non-ASCII character in base64 data") from None
    return binascii.a2b_base64(data, strict_mode=True)  # what b64decode(validate=True) does


def b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def envelope(message: dict[str, Any] | bytes, flags: int = 0) -> bytes:
    import json  # imported on first use (or by the warm-up after the first request)

    data = message if isinstance(message, bytes) else json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(data)) + data


def end_stream(error: RpcError | None = None) -> bytes:
    return envelope({"error": error.to_json()} if error else {}, END_STREAM)


async def read_envelope(request: Request) -> dict[str, Any] | None:
    """The next message of a streaming request body, or None at its end."""
    head = await request.read_exactly(5)
    if head is None:
        return None
    flags, length = struct.unpack(">BI", head)
    if length > 16 * 1024 * 1024:
        raise RpcError("resource_exhausted", "message too large")
    data = await request.read_exactly(length) if length else b""
    if length and data is None:
        raise BadRequest("body ended inside a message")
    if flags & 0x01:
        raise RpcError("unimplemented", "compressed messages are not supported")
    return parse_message(data or b"")


def parse_message(data: bytes) -> dict[str, Any]:
    if not data.strip():
        return {}
    import json

    try:
        message = json.loads(data)
    except ValueError:
        raise RpcError("invalid_argument", "request is not valid JSON") from None
    if not isinstance(message, dict):
        raise RpcError("invalid_argument", "request must be a JSON object")
    return message


async def send_unary_error(response: Response, error: RpcError) -> None:
    import json

    body = json.dumps(error.to_json()).encode()
    await response.send(HTTP_STATUS.get(error.code, 500), body)


async def send_unary(response: Response, message: dict[str, Any]) -> None:
    import json

    await response.send(200, json.dumps(message, separators=(",", ":")).encode())


def wants_raw_output(request: Request) -> bool:
    return CONNECT_RAW_OUTPUT in request.headers.get("accept", "")


async def start_stream(response: Response, content_type: str = CONNECT_JSON) -> None:
    await response.start(200, {"Content-Type": content_type})
