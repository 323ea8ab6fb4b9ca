"""What the control plane's port proxy and a host agent agree on about a capsule's TCP ports.

A remote agent exposes one WebSocket per proxied connection, `tunnel_path(capsule_id, port)`,
behind its usual host-key authentication: binary messages carry the TCP stream's bytes both ways,
the agent never opens a capsule port to anyone else. A refusal is an HTTP denial of the handshake
with the agent's error body; `PortClosed` is the one error only ports have.
"""

from __future__ import annotations

from urllib.parse import quote

from wrenn_platform.wire.agent import AgentError, BadRequest

CONNECT_TIMEOUT_S = 5.0  # a port that does not accept a connection in this time counts as closed


class PortClosed(AgentError):
    """Nothing accepted a connection on the capsule's port."""

    status = 502
    code = "port_closed"


def tunnel_path(capsule_id: str, port: int) -> str:
    return f"/v1/capsules/{quote(capsule_id, safe='')}/ports/{port}/tunnel"


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise BadRequest(f"invalid port {port}: 1-65535")


def closed_message(capsule_id: str, port: int, why: str) -> str:
    return f"nothing is listening on port {port} in capsule {capsule_id} ({why})"
