"""Request bodies are bounded while they arrive: 413 above `max_request_bytes`, never buffered first.

An ASGI middleware wraps `receive`: a declared `Content-Length` above the limit is refused at the
first read (before a byte of the body is taken), and a body without one (chunked) is counted and
refused as soon as it passes the limit. The check runs when the body is read, after routing, so a
route that streams a larger body with its own bound (the multipart file upload) lifts it first
with `lift_body_limit(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SCOPE_KEY = "wrenn.body_limit"


@dataclass
class _Limit:
    max_bytes: int | None


def too_large(limit: int) -> HTTPException:
    # A starlette HTTPException on purpose: FastAPI re-raises it from its body parsing (anything else
    # becomes a 400 there), and the app's handler answers it in the contract's error shape.
    return HTTPException(413, f"request body larger than the {limit} byte limit")


def lift_body_limit(request: Request) -> None:
    """For a route that bounds its own (larger) body as it streams it."""
    limit = request.scope.get(_SCOPE_KEY)
    if isinstance(limit, _Limit):
        limit.max_bytes = None


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _Limit(self.max_bytes)
        scope[_SCOPE_KEY] = limit
        declared = _declared_length(scope)
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            if limit.max_bytes is not None and declared is not None and declared > limit.max_bytes:
                raise too_large(limit.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if limit.max_bytes is not None and received > limit.max_bytes:
                    raise too_large(limit.max_bytes)
            return message

        await self.app(scope, bounded_receive, send)
