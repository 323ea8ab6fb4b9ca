"""envd under test: a copy of the package in a temporary root-owned directory, run by the
interpreter with no site-packages (`-S -E`), so only the standard library is available to it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient

ENVD_SOURCE = Path(__file__).resolve().parents[2] / "src" / "wrenn_platform" / "envd"
TOKEN = "test-token-0123456789"
# The interpreter guests run envd with (Debian's python3), when this machine has it.
GUEST_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
COPY_NAME = "guest_agent"  # a different package name: envd must only use relative imports


class EnvdProcess:
    def __init__(self, popen: subprocess.Popen[bytes], port: int, token: str | None, root: Path) -> None:
        self.popen = popen
        self.port = port
        self.token = token
        self.root = root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def client(self, **kwargs: object) -> EnvdClient:
        return EnvdClient(self.url, self.token, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, popen: subprocess.Popen[bytes], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"envd exited with {popen.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 204:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError("envd did not become healthy")


@pytest.fixture(scope="session")
def envd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("envd-root")
    os.chmod(root, 0o755)
    shutil.copytree(ENVD_SOURCE, root / COPY_NAME, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="session")
def start_envd(envd_root: Path) -> Iterator[Callable[..., EnvdProcess]]:
    started: list[EnvdProcess] = []

    def start(*extra: str, token: str | None = TOKEN, prefix: tuple[str, ...] = ()) -> EnvdProcess:
        port = _free_port()
        argv = [*prefix, GUEST_PYTHON, "-S", "-E", "-m", COPY_NAME, "--host", "127.0.0.1"]
        argv += ["--port", str(port), *extra]
        if token:
            argv += ["--access-token", token]
        popen = subprocess.Popen(argv, cwd=envd_root)
        envd = EnvdProcess(popen, port, token, envd_root)
        started.append(envd)
        wait_healthy(envd.url, popen)
        return envd

    yield start
    for envd in started:
        envd.stop()


@pytest.fixture(scope="session")
def envd(start_envd: Callable[..., EnvdProcess]) -> EnvdProcess:
    return start_envd("--pty-idle-timeout", "1.5", "--output-buffer", str(1024 * 1024))


@pytest.fixture
async def client(envd: EnvdProcess) -> AsyncIterator[EnvdClient]:
    async with envd.client() as c:
        yield c


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh root-owned directory under /tmp, readable (not writable) by other users."""
    path = Path(tempfile.mkdtemp(prefix="envd-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def small_disk(workdir: Path) -> Iterator[Path]:
    mount = workdir / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
