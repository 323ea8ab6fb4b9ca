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
