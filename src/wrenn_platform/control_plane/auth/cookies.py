"""Setting and clearing the session (`wrenn_sid`) and CSRF (`wrenn_csrf`) cookies."""

from __future__ import annotations

from starlette.responses import Response

from ..settings import Settings
from .principal import CSRF_COOKIE, SESSION_COOKIE


def set_session_cookies(response: Response, settings: Settings, sid: str, csrf: str) -> None:
    common = {"max_age": settings.session_absolute_seconds, "path": "/", "secure": settings.secure_cookies,
              "samesite": "strict"}
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, **common)  # type: ignore[arg-type]
    # Readable by the page on purpose: it echoes the value in X-CSRF-Token (double submit).
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]


def clear_session_cookies(response: Response, settings: Settings) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=settings.secure_cookies, httponly=httponly, samesite="strict")
