"""envd reached the E2B way, through the port proxy (`proxy/middleware.py`).

- `E2B_SANDBOX_URL`: the client sends every envd request to one URL with the headers
  `E2b-Sandbox-Id` and `E2b-Sandbox-Port`; `header_target` reads them (any Host, so the URL can be
  the API's own).
- the host form `{port}-{sandboxID}.{domain}` is the proxy's own routing.

Either way envd checks the client's `X-Access-Token` itself (the sandbox's `envdAccessToken`, see
`CapsuleService.envd_token`). The proxy's own refusals go out the way E2B's proxy words them: a
sandbox that is gone (unknown, stopped) is a 502 "... was not found" — what the client reads as
"not running" (`Sandbox.is_running()` → False).
"""

from __future__ import annotations

import json

from starlette.types import Scope

from wrenn_platform.wire.envd import PORT as ENVD_PORT

from ..errors import ApiError

_ID = b"e2b-sandbox-id"
_PORT = b"e2b-sandbox-port"


def header_target(scope: Scope) -> tuple[int, str] | None:
    """(port, sandbox id) from E2B's routing headers; None when the request has none. A port that
    is not a number gives port 0, which the proxy refuses (400)."""
    sandbox_id = port = None
    for name, value in scope["headers"]:
        if name == _ID:
            sandbox_id = value.decode("latin-1")
        elif name == _PORT:
            port = value
    if sandbox_id is None:
        return None
    if port is None:
        return ENVD_PORT, sandbox_id
    return (int(port) if port.isdigit() and len(port) <= 5 else 0), sandbox_id


def e2b_refusal(exc: ApiError, sandbox_id: str) -> tuple[int, bytes]:
    """The proxy's refusal in E2B's words: status and `{"code", "message"}` body."""
    status, message = exc.status, exc.message
    if status in (404, 409):
        status, message = 502, f"The sandbox {sandbox_id} was not found: {exc.message}"
    return status, json.dumps({"code": status, "message": message}).encode()
