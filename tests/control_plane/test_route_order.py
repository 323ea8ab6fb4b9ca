"""app.py mounts the capsule routes first (the hot path: FastAPI tries routes one by one). That order
changes nothing else only while no other module's path is matched by a capsule route."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from wrenn_platform.control_plane.app import _route_modules
from wrenn_platform.control_plane.routes import capsules


def _path(route: BaseRoute) -> str:
    return str(getattr(route, "path", ""))


def test_capsule_routes_come_first() -> None:
    assert _route_modules()[0] is capsules.router


def test_no_other_path_falls_under_a_capsule_route() -> None:
    others = [_path(r) for router in _route_modules()[1:] for r in router.routes]
    mine = [r for r in capsules.router.routes if isinstance(r, Route | WebSocketRoute)]
    shadowed = [(other, route.path) for route in mine for other in others if route.path_regex.match(other)]
    assert others and len(mine) == len(capsules.router.routes) and not shadowed
    assert any(route.path_regex.match("/v1/capsules/{x}/exec") for route in mine)  # the check can fail
