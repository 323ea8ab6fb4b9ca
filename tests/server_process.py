"""`wrenn server` as users run it: the installed `wrenn` command in a process of its own (uvicorn on
uvloop and httptools, the embedded host agent), started the way `make run` starts it
(`wrenn server --data-dir DIR --port PORT`, plus `--runtime`), and an account on it made the way the
README's quick start makes one (`wrenn admin create`, log in, `POST /v1/api-keys`).

    server = start_server(data_dir, runtime="namespace", cache_dir=pinned_cache(template, root))
    account = create_account(server)          # platform admin + API key of their team
    httpx.get(f"{server.url}/v1/capsules", headers=account.headers())
    server.log_text()                         # everything it logged (stdout and stderr)
    server.stop()

Other `WRENN_*` settings go in `env`. The data directory must be traversable by other users (the
capsules' unprivileged uids): `open_dir()` makes one under /tmp.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from wrenn_platform.host_agent.templates import TemplateInfo

WRENN = Path(sys.executable).parent / "wrenn"  # the console script `make run` runs
READY_TIMEOUT_S = 120.0
E2E_ROOT = Path("/tmp/wrenn-e2e")


class ServerProcess:
    """One `wrenn server` process: `start()` (again after `stop()` or `kill()`: same port, same data),
    `stop()` (SIGTERM, the server's shutdown; capsules keep running, as after stopping `make run`),
    `kill()` (SIGKILL: no shutdown hook runs), `log_text()` (its stdout and stderr)."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 runtime: str = "namespace", cache_dir: Path | None = None, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, log_level: str | None = None) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port()
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
        self.argv = [str(WRENN), "server", "--data-dir", str(data_dir), "--host", host, "--port", str(self.port),
                     "--runtime", runtime] + (["--log-level", log_level] if log_level else [])
        # Only what the caller sets: no WRENN_* of the test run leaks into the server.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
        if cache_dir is not None:
            self.env["WRENN_CACHE_DIR"] = str(cache_dir)
        # No warm pool unless the test asks for one (`env`): with a pool, which capsule a create
        # gets and how busy the host is would depend on the refill's timing.
        self.env["WRENN_WARM_POOL_SIZE"] = "0"
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> ServerProcess:
        """Start it and wait until `GET /health` answers."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wrenn server exited ({self.proc.returncode}): {self.log_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"wrenn server not ready in {READY_TIMEOUT_S} s: {self.log_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Account:
    email: str
    password: str
    api_key: str
    team_id: str

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_dir(prefix: str) -> Path:
    """A fresh directory every user may traverse (pytest's tmp_path is 0700)."""
    E2E_ROOT.mkdir(mode=0o755, exist_ok=True)
    E2E_ROOT.chmod(0o755)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=E2E_ROOT))
    path.chmod(0o755)
    return path


def pinned_cache(template: TemplateInfo, root: Path, *others: TemplateInfo) -> Path:
    """A cache directory whose `minimal` is exactly `template` (and each of `others` is exactly
    itself): the shared cache's `current` links are repointed by every build on this machine (other
    checkouts included). Kernels and base images of the microvm runtime are the shared cache's."""
    shared = template.path.parent.parent.parent  # <cache>/templates/minimal/<build>/
    cache = root / "cache"
    for pinned in (template, *others):
        (cache / "templates" / pinned.name).mkdir(parents=True)
        (cache / "templates" / pinned.name / "current").symlink_to(pinned.path)
        (cache / "templates" / pinned.name).chmod(0o755)
    (cache / "microvm").symlink_to(shared / "microvm")
    for d in (cache, cache / "templates"):
        d.chmod(0o755)
    return cache


def start_server(data_dir: Path, **options: Any) -> ServerProcess:
    """`wrenn server --data-dir DATA_DIR --host HOST --port PORT --runtime RUNTIME`, ready; the options
    are `ServerProcess`'s."""
    return ServerProcess(data_dir, **options).start()


@contextlib.contextmanager
def running_server(data_dir: Path, **options: Any) -> Iterator[ServerProcess]:
    server = start_server(data_dir, **options)
    try:
        yield server
    finally:
        server.stop()


def create_account(server: ServerProcess, email: str | None = None) -> Account:
    """A platform admin made with `wrenn admin create` on the server's data directory, logged in,
    with an API key of their team (the README's quick start)."""
    email = email or f"admin-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(12)
    subprocess.run([str(WRENN), "admin", "create", "--data-dir", str(server.data_dir), "--email", email,
                    "--password", password], check=True, capture_output=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("WRENN_")})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login = http.post("/v1/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        # The session cookie is `Secure` (as under `make run`): httpx keeps it off plain HTTP, curl
        # sends it to localhost; send it by hand.
        sid, csrf = login.cookies[SESSION_COOKIE], login.cookies[CSRF_COOKIE]
        browser = {"Cookie": f"{SESSION_COOKIE}={sid}; {CSRF_COOKIE}={csrf}", CSRF_HEADER: csrf}
        team_id = login.json()["team_id"]
        key = http.post("/v1/api-keys", json={"name": "e2e"}, headers=browser)
        key.raise_for_status()
    return Account(email=email, password=password, api_key=key.json()["key"], team_id=team_id)
