"""The daemon: auth, /init, /health, /metrics, its import graph, PID 1 duties, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError

from .conftest import COPY_NAME, GUEST_PYTHON, TOKEN, EnvdProcess, wait_healthy

HEAVY_MODULES = {"http.server", "http.client", "email", "urllib.request", "socketserver", "shutil",
                 "dataclasses", "argparse", "datetime", "zipfile", "tarfile"}


async def test_token_is_required_except_for_health(envd: EnvdProcess) -> None:
    async with httpx.AsyncClient(base_url=envd.url) as http:
        assert (await http.get("/health")).status_code == 204
        for headers in ({}, {"X-Access-Token": "wrong"}, {"X-Access-Token": TOKEN + "x"}):
            r = await http.post("/process.Process/List", json={}, headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
            assert (await http.get("/files", params={"path": "/etc/hostname"}, headers=headers)).status_code == 401
            assert (await http.get("/metrics", headers=headers)).status_code == 401
            assert (await http.post("/init", json={}, headers=headers)).status_code == 401
        r = await http.post("/process.Process/List", json={}, headers={"X-Access-Token": TOKEN})
        assert r.status_code == 200 and "processes" in r.json()


async def test_init_sets_token_env_user_and_workdir(start_envd: Callable[..., EnvdProcess]) -> None:
    fresh = start_envd(token=None)
    async with EnvdClient(fresh.url) as client:
        assert (await client.run("true")).exit_code == 0  # no token set yet: open
        await client.init(
            access_token="new-secret", env_vars={"GREETING": "hello"}, default_user="nobody",
            default_workdir="/tmp", timestamp=time.time(),
        )
        assert client.access_token == "new-secret"
        result = await client.run("sh", ["-c", 'echo "$GREETING $(id -un) $(pwd)"'])
        assert result.stdout == b"hello nobody /tmp\n"
        assert (await client.run("id", ["-un"], user="root")).stdout == b"root\n"
    async with EnvdClient(fresh.url) as anonymous:
        with pytest.raises(EnvdError) as exc:
            await anonymous.init(access_token="stolen")
        assert exc.value.code == "unauthenticated"
        with pytest.raises(EnvdError):
            await anonymous.list_processes()
    async with EnvdClient(fresh.url, "new-secret") as client:
        with pytest.raises(EnvdError) as exc:
            await client.init(default_user="no-such-user")
        assert exc.value.code == "invalid_argument"
        await client.init(access_token="rotated")
        assert (await client.run("true")).exit_code == 0
    async with EnvdClient(fresh.url, "new-secret") as stale:
        with pytest.raises(EnvdError):
            await stale.list_processes()


async def test_metrics(client: EnvdClient) -> None:
    m = await client.metrics()
    assert m.cpu_count == os.cpu_count()
    assert 0 <= m.cpu_used_pct <= 100
    assert 0 < m.mem_used < m.mem_total
    assert 0 < m.disk_used <= m.disk_total
    assert abs(m.ts - time.time()) < 5


def test_import_graph_is_small(envd_root: Path) -> None:
    code = f"import {COPY_NAME}.__main__, {COPY_NAME}.server"
    done = subprocess.run([GUEST_PYTHON, "-S", "-E", "-X", "importtime", "-c", code], cwd=envd_root,
                          capture_output=True, text=True, check=True)
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines()[1:]}
    assert f"{COPY_NAME}.server" in modules
    assert not modules & HEAVY_MODULES, modules & HEAVY_MODULES
    assert not {m for m in modules if m.startswith("wrenn_platform")}


def test_cli_runs_envd(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wrenn = Path(sys.executable).with_name("wrenn")
    popen = subprocess.Popen([str(wrenn), "envd", "--host", "127.0.0.1", "--port", str(port),
                              "--access-token", "cli-token"])
    try:
        wait_healthy(f"http://127.0.0.1:{port}", popen, within=20)
        r = httpx.post(f"http://127.0.0.1:{port}/process.Process/List", json={},
                       headers={"X-Access-Token": "cli-token"})
        assert r.status_code == 200
    finally:
        popen.terminate()
        assert popen.wait(10) == 0


def _read_or_empty(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


async def test_orphans_are_reaped(envd: EnvdProcess, client: EnvdClient) -> None:
    result = await client.run("sh", ["-c", "sleep 0.3 & echo $!"])
    orphan = int(result.stdout)
    await asyncio.sleep(0.8)
    status = _read_or_empty(f"/proc/{orphan}/status")
    assert f"PPid:\t{envd.pid}\n" not in status  # not left a zombie of envd


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.fixture
def pid_namespaces() -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a pid namespace here")


@pytest.mark.usefixtures("pid_namespaces")
async def test_as_pid_1_reaps_forwards_signals_and_survives_children(
    start_envd: Callable[..., EnvdProcess], workdir: Path
) -> None:
    envd = start_envd(prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    async with envd.client() as client:
        assert (await client.run("sh", ["-c", "echo $$"])).stdout != b""
        pid1 = await client.run("cat", ["/proc/1/cmdline"])
        assert COPY_NAME.encode() in pid1.stdout
        # A child that dies violently does not take envd with it.
        crash = await client.run("sh", ["-c", "kill -SEGV $$"])
        assert crash.status == "signal: segmentation fault"
        # Orphans are adopted by PID 1 and reaped: no zombies pile up.
        await client.run("sh", ["-c", "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done"])
        await asyncio.sleep(0.5)
        zombies = await client.run("sh", ["-c", "grep -l '^State:.*Z' /proc/[0-9]*/status || true"])
        assert zombies.stdout == b""
        # SIGTERM to envd reaches its processes, then envd exits.
        marker = workdir / "got-term"
        await client.start_background(
            "sh", ["-c", f"trap 'echo term > {marker}; exit 0' TERM; while :; do sleep 0.05; done"]
        )
    await asyncio.sleep(0.2)
    [inner] = _children_of(envd.popen.pid)  # unshare's child is envd, PID 1 of the namespace
    os.kill(inner, signal.SIGTERM)
    assert envd.popen.wait(10) == 0
    assert marker.read_text() == "term\n"
