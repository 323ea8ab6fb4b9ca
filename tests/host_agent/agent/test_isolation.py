"""A tenant's code cannot reach the agent's API, even when the agent listens on every address."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import httpx
import pytest
import uvicorn

from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.api import create_app
from wrenn_platform.wire.agent import CreateCapsuleRequest, ExecRequest, ExecResponse

from .conftest import Served

pytestmark = pytest.mark.root

PROBE = """
import socket, sys
for host in sys.argv[1:-1]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, int(sys.argv[-1]))); print(host, "open")
    except OSError as e:
        print(host, "blocked", type(e).__name__)
"""


def host_addresses() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    return [a for a in out if ":" not in a and not a.startswith("10.11.")][:2]


async def test_capsule_cannot_connect_to_the_agent_port(served: Served, http: HttpAgentClient) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("0.0.0.0", 0))  # the worst case: an operator binds the agent to every address
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served.agent, served.key), log_level="warning",
                                           lifespan="off", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        info = await http.create(CreateCapsuleRequest())
        gateway = (served.agent._get(info.id).slot or {})["gateway_ip"]
        targets = [gateway, *host_addresses()]
        async with httpx.AsyncClient() as c:  # reachable from the host: the probe can fail
            for target in targets:
                assert (await c.get(f"http://{target}:{port}/v1/info")).status_code == 401
        r = await http.exec(info.id, ExecRequest(cmd="python3", args=["-c", PROBE, *targets, str(port)]))
        assert isinstance(r, ExecResponse), r
        lines = r.stdout.splitlines()
        assert len(lines) == len(targets)
        assert all(" blocked " in line for line in lines), r.stdout
    finally:
        server.should_exit = True
        await task
        sock.close()
