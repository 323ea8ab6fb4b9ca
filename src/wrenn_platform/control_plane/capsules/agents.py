"""Which agent client serves which host, and how agent failures become API errors.

Every call into an agent goes through `agent_errors()`, so a tenant sees the contract's statuses:
404 / 409 / 400 as the agent said, 502 for an agent or guest failure or an unreachable agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.agent_link.errors import AgentUnreachable
from wrenn_platform.wire.agent import AgentError, AlreadyExists, BadRequest, Conflict, NotFound

from ..errors import ApiError


def unreachable(host_id: str | None, detail: str = "") -> ApiError:
    suffix = f": {detail}" if detail else ""
    return ApiError(502, "agent_unreachable", f"host agent of {host_id or 'the capsule'} is unreachable{suffix}")


def to_api_error(exc: AgentError) -> ApiError:
    if isinstance(exc, AlreadyExists):
        return ApiError(409, "already_exists", exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", exc.message)
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", exc.message)
    if isinstance(exc, BadRequest):
        return ApiError(400, "invalid_request", exc.message)
    if isinstance(exc, AgentUnreachable):
        return ApiError(502, exc.code, exc.message)
    return ApiError(502, exc.code if exc.code != "agent_error" else "bad_gateway", exc.message)


@contextmanager
def agent_errors() -> Iterator[None]:
    try:
        yield
    except AgentError as exc:
        raise to_api_error(exc) from exc
    except (httpx.HTTPError, OSError) as exc:
        raise ApiError(502, "agent_unreachable", f"host agent unreachable: {exc}") from exc


class AgentRegistry:
    """host id → the client that reaches that host's agent (filled by the embedded agent and, later,
    by remote host registration)."""

    def __init__(self) -> None:
        self._clients: dict[str, AgentClient] = {}

    def add(self, host_id: str, client: AgentClient) -> None:
        self._clients[host_id] = client

    def remove(self, host_id: str) -> None:
        self._clients.pop(host_id, None)

    def host_ids(self) -> set[str]:
        return set(self._clients)

    def get(self, host_id: str | None) -> AgentClient:
        client = self._clients.get(host_id or "")
        if client is None:
            raise unreachable(host_id, "no connection to this host")
        return client

    def items(self) -> list[tuple[str, AgentClient]]:
        return list(self._clients.items())
