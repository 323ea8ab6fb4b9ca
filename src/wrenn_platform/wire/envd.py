"""envd's wire constants as the host side uses them: one definition, envd's own (`envd.protocol`).

envd ships alone into every template and cannot import from outside its package, so the constants
live there and are re-exported here for the host agent, its runtimes and the benches.
"""

from wrenn_platform.envd.protocol import (
    CONNECT_JSON,
    CONNECT_RAW_OUTPUT,
    END_STREAM,
    PORT,
    RAW_OUTPUT,
    RAW_STREAM_IDS,
    VERSION,
)

__all__ = ["CONNECT_JSON", "CONNECT_RAW_OUTPUT", "END_STREAM", "PORT", "RAW_OUTPUT", "RAW_STREAM_IDS", "VERSION"]


def envd_url(host_ip: str) -> str:
    """The base URL of the envd listening on a capsule's address."""
    return f"http://{host_ip}:{PORT}"
