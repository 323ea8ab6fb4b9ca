"""A standalone `wrenn agent` daemon (secret file, no control plane) run as a child process of a
test and reached over HTTP, as an operator's control plane would reach it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from wrenn_platform.agent_link.auth import HostKey, create_secret_file, load_secret
from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.daemon import AgentConfig, load_or_create_host_id
from wrenn_platform.wire.agent import AgentError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _identity(config: AgentConfig, secret_file: Path) -> tuple[bytes, str]:
    secret = load_secret(secret_file) if secret_file.exists() else create_secret_file(secret_file)
    return secret, config.host_id or load_or_create_host_id(config.data_dir)


def _open_log(log_file: Path | None) -> BinaryIO:
    return open(log_file or os.devnull, "ab")  # closed by the caller after the child exits


@contextlib.asynccontextmanager
async def child_agent(config: AgentConfig, secret_file: Path, port: int | None = None,
                      ready_within: float = 60.0, log_file: Path | None = None) -> AsyncIterator[HttpAgentClient]:
    """Start `wrenn agent` on a loopback port, yield a client once it answers, stop it on exit
    (SIGTERM; its capsules keep running and are re-adopted by the next start)."""
    secret, host_id = _identity(config, secret_file)
    port = port or free_port()
    argv = [sys.executable, "-m", "wrenn_platform.cli.main", "agent", "--data-dir", str(config.data_dir),
            "--cache-dir", str(config.cache_dir), "--listen", f"127.0.0.1:{port}", "--runtime", config.runtime,
            "--secret-file", str(secret_file), "--host-id", host_id, "--min-timeout", str(config.min_timeout_sec),
            "--log-level", "warning"]
    out = _open_log(log_file)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
    client = HttpAgentClient(f"http://127.0.0.1:{port}", HostKey(host_id, secret))
    try:
        deadline = asyncio.get_running_loop().time() + ready_within
        while True:
            if proc.returncode is not None:
                raise AgentError(f"wrenn agent exited with {proc.returncode} while starting")
            try:
                await client.info()
                break
            except AgentError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        yield client
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        out.close()
