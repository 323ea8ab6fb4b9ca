"""The control plane's ASGI app: `create_app(settings)`.

Route modules live in `routes/`; every module there that defines `router` is mounted, so adding a
route group is adding a file. Long-lived services (bus, mailer, agents...) start in `lifespan`
through `services.py`'s registry so that each one owns its own start and stop.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from .. import __version__
from . import routes
from .console import mount_console
from .db.engine import make_engine, make_sessionmaker
from .db.migrate import upgrade
from .errors import install_error_handlers
from .proxy.middleware import ControlPlaneApp, port_hosts
from .services import start_services
from .settings import Settings

# Mounted first: routes are matched one by one in mount order, and the capsule routes (exec...) are the
# hot path; no other module's path falls under theirs (`/v1/capsules...`), so the order changes nothing else.
_FIRST = ("capsules",)


def _route_modules() -> list[APIRouter]:
    routers: list[APIRouter] = []
    modules = sorted(pkgutil.iter_modules(routes.__path__), key=lambda i: (i.name not in _FIRST, i.name))
    for info in modules:
        module = importlib.import_module(f"{routes.__name__}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url())
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        await upgrade(engine)
        async with start_services(app):
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False
        await engine.dispose()

    app = ControlPlaneApp(
        title="Wrenn API",
        description="AI agent execution platform API.",
        version="0.2.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    install_error_handlers(app)
    app.port_hosts = port_hosts(settings)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for router in _route_modules():
        app.include_router(router)
    mount_console(app)  # last: it claims only `/` and `/console/`, after every API route
    return app
