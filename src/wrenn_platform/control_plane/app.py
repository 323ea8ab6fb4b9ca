"""The control plane's ASGI app: `create_app(settings)`.

Everything the app runs is listed here: the route groups it mounts (`ROUTERS`, in `routes/`) and
the long-lived services its lifespan starts (`SERVICES`, in order; stopped in reverse). Adding a
route group or a service is adding it to its list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from .. import __version__
from .auth.key_cache import key_cache_service
from .auth.key_rate import key_rate_service
from .auth.login_limits import login_limits_service
from .auth.purge import purge_service
from .auth.session_cache import session_cache_service
from .body_limit import BodyLimitMiddleware
from .builds.worker import build_worker
from .bus import bus_service
from .capsules.lifespan import capsule_service, capsule_workers
from .capsules.usage import usage_sampler
from .channels.dispatcher import dispatcher_service
from .console import mount_console
from .db.engine import make_engine, make_sessionmaker
from .db.migrate import upgrade
from .e2b.lifetime import lifetime_loop
from .embedded_agent import embedded_agent
from .errors import install_error_handlers
from .events.hub import hub_service
from .events.relay import relay_service
from .mail.mailer import mailer_service
from .proxy.middleware import ControlPlaneApp, port_hosts, port_proxy
from .routes import (
    admin_builds,
    admin_capsules,
    admin_teams,
    admin_templates,
    admin_users,
    api_keys,
    audit,
    auth,
    capsules,
    channels,
    e2b,
    events,
    hosts,
    hosts_admin,
    me,
    oauth,
    snapshots,
    teams,
    users,
)
from .services import ServiceFactory, start_services
from .settings import Settings

# Mount order: the capsule routes first. Routes are matched one by one in mount order and the
# capsule routes (exec...) are the hot path; no other group's path falls under theirs
# (`/v1/capsules...`, tests/control_plane/test_route_order.py), so the order changes nothing else.
ROUTERS: tuple[APIRouter, ...] = (
    capsules.router,
    admin_builds.router,
    admin_capsules.router,
    admin_teams.router,
    admin_templates.router,
    admin_users.router,
    api_keys.router,
    audit.router,
    auth.router,
    channels.router,
    e2b.router,
    events.router,
    hosts.router,
    hosts_admin.router,
    me.router,
    oauth.router,
    snapshots.router,
    teams.router,
    users.router,
)

SERVICES: tuple[ServiceFactory, ...] = (
    bus_service,  # app.state.redis / .bus: the caches, the relay and the hub below use them
    session_cache_service,
    login_limits_service,
    key_cache_service,
    key_rate_service,  # requests per second per API key (a team limit)
    mailer_service,
    relay_service,  # committed events numbered and queued...
    hub_service,  # ...fanned out to this replica's SSE clients...
    dispatcher_service,  # ...and delivered to notification channels
    capsule_service,  # the agent registry and CapsuleService, before any agent registers in it
    port_proxy,  # app.state.port_proxy, over the capsule service
    embedded_agent,  # joins through the routes, registers its in-process client
    capsule_workers,  # fleet and reconciler loops: stopped before the agents go
    lifetime_loop,  # E2B sandboxes' end of life (pause or kill when their timeout passes)
    usage_sampler,
    build_worker,
    purge_service,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url())
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        await upgrade(engine)
        async with start_services(app, SERVICES):
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
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for router in ROUTERS:
        app.include_router(router)
    mount_console(app)  # last: it claims only `/` and `/console/`, after every API route
    return app
