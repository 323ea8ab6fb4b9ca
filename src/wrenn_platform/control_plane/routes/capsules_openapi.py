"""OpenAPI fragments the tenant and admin capsule routes document alike (no routes here)."""

from __future__ import annotations

from typing import Any

from wrenn_platform.wire.api.capsules import BackgroundExecResponse, ExecResponse

from ..errors import responses

EXEC_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(404, 409),
    200: {"model": ExecResponse, "description": "Command output (foreground exec)"},
    202: {"model": BackgroundExecResponse, "description": "Background process started"},
}
FILE_BODY = {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["path", "file"],
    "properties": {"path": {"type": "string"}, "file": {"type": "string", "format": "binary"}}}}}}
BYTES = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
