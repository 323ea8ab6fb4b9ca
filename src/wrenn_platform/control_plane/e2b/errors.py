"""E2B's error body, `{"code": <HTTP status>, "message": "..."}`, for every failure of an E2B route.

`E2bRoute` turns what the shared code raises (`ApiError`, validation errors, HTTP errors) into that
shape, so the E2B routes reuse the capsule service as it is and only their answers differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError

log = logging.getLogger(__name__)


def e2b_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


class E2bRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status >= 500:
                    log.warning("E2B %s %s: %s %s", request.method, request.url.path, exc.status, exc.message)
                return e2b_error(exc.status, exc.message)
            except RequestValidationError as exc:
                return e2b_error(400, _validation_message(exc))
            except HTTPException as exc:
                return e2b_error(exc.status_code, str(exc.detail))
            except Exception:
                log.exception("E2B %s %s failed", request.method, request.url.path)
                return e2b_error(500, "internal error (logged by the server)")

        return answer
