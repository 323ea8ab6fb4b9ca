"""The web console: static ES modules and CSS served by `wrenn server` on the API's own origin.

`/` (and the email links' `/activate`) answer the console's one HTML page; its assets live under
`/console/`. Nothing else is claimed, so no API path is shadowed and unknown API paths keep their
JSON 404/405. The page speaks only the public API with the session cookie and the CSRF header.
See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
INDEX = STATIC_DIR / "index.html"
ASSETS_PREFIX = "/console"

# Scripts and connections only from this origin (no CDN); xterm.js sets inline styles.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    # The activation token is in the page's URL: keep it out of Referer headers.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # the email links carry tokens in their URLs
}


def index_response() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html", headers=HEADERS)


def mount_console(app: FastAPI) -> None:
    """Mounted after the API routers (routes are matched in order)."""

    @app.get("/", include_in_schema=False)
    async def console_index() -> FileResponse:
        return index_response()

    app.mount(ASSETS_PREFIX, StaticFiles(directory=STATIC_DIR), name="console")
