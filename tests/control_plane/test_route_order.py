"""app.py mounts every route group of routes/ (listed in `ROUTERS`), the capsule routes first (the
hot path: FastAPI tries routes one by one). That order changes nothing else only while no other
module's path is matched by a capsule route."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter
from starlette.routing import BaseRoute, Route, WebSocketRoute

from wrenn_platform.control_plane import routes
from wrenn_platform.control_plane.app import ROUTERS
from wrenn_platform.control_plane.routes import capsules


def _path(route: BaseRoute) -> str:
    return str(getattr(route, "path", ""))


def test_every_route_module_is_mounted_once() -> None:
    defined = []
    for info in pkgutil.iter_modules(routes.__path__):
        router = getattr(importlib.import_module(f"{routes.__name__}.{info.name}"), "router", None)
        if isinstance(router, APIRouter):
            defined.append(router)
    assert len(set(map(id, ROUTERS))) == len(ROUTERS) and {id(r) for r in defined} == {id(r) for r in ROUTERS}


def test_capsule_routes_come_first() -> None:
    assert ROUTERS[0] is capsules.router


def test_no_other_path_falls_under_a_capsule_route() -> None:
    others = [_path(r) for router in ROUTERS[1:] for r in router.routes]
    mine = [r for r in capsules.router.routes if isinstance(r, Route | WebSocketRoute)]
    shadowed = [(other, route.path) for route in mine for other in others if route.path_regex.match(other)]
    assert others and len(mine) == len(capsules.router.routes) and not shadowed
    assert any(route.path_regex.match("/v1/capsules/{x}/exec") for route in mine)  # the check can fail


def test_the_console_comes_after_every_api_route_and_claims_only_its_paths() -> None:
    from fastapi.testclient import TestClient

    from wrenn_platform.control_plane.app import create_app

    app = create_app()
    assert [_path(r) for r in app.router.routes][-2:] == ["/", "/console"]  # after every API router
    client = TestClient(app)  # no lifespan: none of these requests reaches a service
    index = client.get("/")
    assert index.status_code == 200 and "script-src 'self'" in index.headers["content-security-policy"]
    assert client.get("/activate", params={"token": "t"}).text == index.text  # the email link opens the console
    assert client.get("/console/js/main.js").headers["content-type"].startswith("text/javascript")
    missing = client.get("/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"  # still the API's JSON
