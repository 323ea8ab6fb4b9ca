"""`wrenn server` started exactly as `make run` starts it — the venv's `wrenn` script, `server
--data-dir DIR --port PORT`, nothing else on the command line — and a user set up on it the way the
README's quick start does: `wrenn admin create`, log in, create an API key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE

WRENN = Path(sys.executable).parent / "wrenn"  # what `make run` runs: $(VENV)/bin/wrenn
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ShippedServer:
    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"wrenn server exited:\n{self.log()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"wrenn server not ready:\n{self.log()[-4000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def create_api_key(self, email: str = "compat@example.com", password: str = "compat-password") -> str:
        """The README's quick start: `wrenn admin create`, log in, `POST /v1/api-keys`."""
        subprocess.run([str(WRENN), "admin", "create", "--data-dir", str(self.data_dir), "--email", email,
                        "--password", password], check=True, capture_output=True)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            login = http.post("/v1/auth/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            # The cookies are `Secure` (as `make run` sets them): sent by hand over plain HTTP.
            cookies = {name: login.cookies[name] for name in (SESSION_COOKIE, CSRF_COOKIE)}
            created = http.post("/v1/api-keys", json={"name": "compat"}, headers={
                "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
                CSRF_HEADER: cookies[CSRF_COOKIE]})
            assert created.status_code == 201, created.text
            key = created.json()["key"]
            assert isinstance(key, str)
            return key


@contextlib.contextmanager
def shipped_server(root: Path, *extra_args: str) -> Iterator[ShippedServer]:
    """`wrenn server --data-dir ROOT/data --port P [extra]`, stopped (SIGTERM) at the end."""
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    port = free_port()
    log_path = root / "server.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("WRENN_")}
    if "WRENN_CACHE_DIR" in os.environ:  # the templates the test session built
        env["WRENN_CACHE_DIR"] = os.environ["WRENN_CACHE_DIR"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(WRENN), "server", "--data-dir", str(data_dir), "--port", str(port), *extra_args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ShippedServer(data_dir=data_dir, port=port, log_path=log_path, proc=proc)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
