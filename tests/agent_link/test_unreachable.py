"""An agent that cannot be reached is told apart by type, not by message text: `AgentUnreachable`
from every call of the HTTP client, mapped to the contract's 502 `agent_unreachable`."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from wrenn_platform.agent_link.auth import HostKey
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.agent_link.errors import AgentUnreachable
from wrenn_platform.control_plane.capsules.agents import to_api_error
from wrenn_platform.wire.agent import AgentError, ExecRequest, GuestError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens there


async def test_every_kind_of_call_to_a_dead_agent_raises_agent_unreachable() -> None:
    client = HttpAgentClient(f"http://127.0.0.1:{_closed_port()}", HostKey("h-1", secrets.token_bytes(32)))
    try:
        with pytest.raises(AgentUnreachable):
            await client.info()
        with pytest.raises(AgentUnreachable):
            await client.exec("c-1", ExecRequest(cmd="true"))
        with pytest.raises(AgentUnreachable):
            async with client.exec_stream("c-1"):
                pass
        with pytest.raises(AgentUnreachable):
            async with client.read_file("c-1", "/etc/hostname"):
                pass
        with pytest.raises(AgentUnreachable):
            await client.write_file("c-1", "/tmp/x", _chunks())
        with pytest.raises(AgentUnreachable):  # the port proxy's tunnel too
            await client.port_link().open("c-1", 8080)
    finally:
        await client.aclose()


async def _chunks() -> AsyncIterator[bytes]:
    yield b"x"


def test_unreachable_is_a_502_agent_unreachable_and_other_failures_are_not() -> None:
    err = to_api_error(AgentUnreachable("host agent unreachable: connection refused"))
    assert (err.status, err.code) == (502, "agent_unreachable")
    # A failure the agent reported, even one whose text looks alike, is a bad gateway, not unreachable.
    err = to_api_error(AgentError("host agent unreachable? no: the guest crashed"))
    assert (err.status, err.code) == (502, "bad_gateway")
    assert to_api_error(GuestError("envd gone")).code != "agent_unreachable"
