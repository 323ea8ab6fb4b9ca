"""The one error shape of the API: `{"error": {"code", "message"}}`, with the right status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

_DEFAULT_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise anywhere in a request to answer with the contract's error body."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str = "not permitted") -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if extra:
        body["error"].update(extra)
    return body


def _field_name(loc: Sequence[Any]) -> str:
    # Only the first element names where the value was (a body field may itself be called `path`).
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc)]
    return ".".join(parts) or str(loc[0] if loc else "request")


_NUL_IN_TEXT = "22021"  # character_not_in_repertoire


def _sqlstate(exc: DBAPIError) -> str | None:
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code:
            return str(code)
    return None


def _without_422(app: FastAPI) -> None:
    """Drop FastAPI's automatic 422 from the served document: validation errors are answered 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    _without_422(app)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.extra), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid request"}
        field = _field_name(first.get("loc", ()))
        message = f"{field}: {first.get('msg', 'invalid value')}"
        return JSONResponse(error_body("invalid_request", message), status_code=400)

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # PostgreSQL stores no NUL character in text (SQLite does): any text field of any request
        # carrying one is the caller's error, answered 400 wherever it reaches the database.
        if _sqlstate(exc) == _NUL_IN_TEXT:
            return JSONResponse(error_body("invalid_request", "text values must not contain a NUL character (U+0000)"),
                                status_code=400)
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _DEFAULT_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


class ErrorModel(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorModel


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses the contract lists for it, in its error shape."""
    return {status: {"model": ErrorResponse, "description": _DEFAULT_CODES.get(status, "error")} for status in statuses}
