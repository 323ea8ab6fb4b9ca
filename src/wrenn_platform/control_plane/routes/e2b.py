"""E2B's REST API beside the Wrenn API: the router lives with the rest of the front door, `control_plane/e2b/`."""

from ..e2b.routes import router

__all__ = ["router"]
