"""`wrenn server`: the embedded default, in the foreground.

One process: the control plane API and, unless `WRENN_EMBEDDED_AGENT=false`, a local host agent
(the `embedded_agent` service of the control plane starts it; nothing to wire here). SQLite under
`--data-dir` unless `--database-url` says otherwise. Every option falls back to its `WRENN_*`
variable (see `control_plane/settings.py`), then to the default.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from wrenn_platform.control_plane.settings import Settings
from wrenn_platform.host_agent.runtimes import refuse_unusable_paths

# uvicorn's libuv event loop and C HTTP/1.1 parser (pinned dependencies): measurably less CPU per request
# than asyncio's loop and h11 (bench/RESULTS.md, capsule API). Named, not "auto": a missing one fails loudly.
LOOP = "uvloop"
HTTP = "httptools"


def server_settings(**options: Any) -> Settings:
    """Settings from the environment, overridden by the options actually given."""
    given: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    settings = Settings(**given)
    if not settings.public_url:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        settings = settings.model_copy(update={"public_url": f"http://{host}:{settings.port}"})
    return settings


def server(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="WRENN_DATA_DIR", help="Database, outbox, agent state (default /var/lib/wrenn)."
    ),
    port: int | None = typer.Option(None, "--port", envvar="WRENN_PORT", help="API port (default 8080)."),
    host: str | None = typer.Option(None, "--host", envvar="WRENN_HOST", help="Listen address (default 127.0.0.1)."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="WRENN_DATABASE_URL", help="SQLAlchemy async URL (default SQLite in DATA_DIR)."
    ),
    redis_url: str | None = typer.Option(None, "--redis-url", envvar="WRENN_REDIS_URL", help="Redis URL (optional)."),
    insecure_cookies: bool = typer.Option(
        False, "--insecure-cookies", help="No `Secure` on cookies: plain-HTTP local use (WRENN_SECURE_COOKIES=false)."
    ),
    runtime: str | None = typer.Option(
        None, "--runtime", envvar="WRENN_RUNTIME", help="Local agent's capsule runtime: auto, namespace or microvm."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error."),
) -> None:
    """Run Wrenn (control plane + local host agent) in the foreground; GET /health answers when ready."""
    import uvicorn

    from wrenn_platform.control_plane.app import create_app

    settings = server_settings(
        data_dir=data_dir, port=port, host=host, database_url=database_url, redis_url=redis_url,
        runtime=runtime, secure_cookies=False if insecure_cookies else None,
    )
    if settings.embedded_agent:
        refuse_unusable_paths("wrenn server", settings.runtime, settings.data_dir, settings.cache_dir)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: the embedded agent's heartbeats would flood the log.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=log_level, proxy_headers=False,
        loop=LOOP, http=HTTP, server_header=False,  # the port proxy passes on the capsule's own `server`
    )
