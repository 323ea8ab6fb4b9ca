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

import httpx

from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from wrenn_platform.host_agent.templates import TemplateInfo

WRENN = Path(sys.executable).parent / "wrenn"  # the console script `make run` runs
READY_TIMEOUT_S = 120.0
E2E_ROOT = Path("/tmp/wrenn-e2e")


@dataclass
class ServerProcess:
    url: str
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the server's shutdown: capsules keep running, as after `make run` is stopped)."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
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


def pinned_cache(template: TemplateInfo, root: Path) -> Path:
    """A cache directory whose `minimal` is exactly `template`: the shared cache's `current` link is
    repointed by every build on this machine (other checkouts included). Kernels and base images
    of the microvm runtime are the shared cache's."""
    shared = template.path.parent.parent.parent  # <cache>/templates/minimal/<build>/
    cache = root / "cache"
    (cache / "templates" / template.name).mkdir(parents=True)
    (cache / "templates" / template.name / "current").symlink_to(template.path)
    (cache / "microvm").symlink_to(shared / "microvm")
    for d in (cache, cache / "templates", cache / "templates" / template.name):
        d.chmod(0o755)
    return cache


def start_server(data_dir: Path, *, runtime: str = "namespace", port: int | None = None,
                 cache_dir: Path | None = None, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None) -> ServerProcess:
    """`wrenn server --data-dir DATA_DIR --port PORT --runtime RUNTIME`, ready (GET /health)."""
    port = port or free_port()
    log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    if cache_dir is not None:
        environment["WRENN_CACHE_DIR"] = str(cache_dir)
    environment.update(env or {})
    argv = [str(WRENN), "server", "--data-dir", str(data_dir), "--port", str(port), "--runtime", runtime]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", port, data_dir, log_path, proc)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"wrenn server exited ({proc.returncode}): {server.log_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"wrenn server not ready in {READY_TIMEOUT_S} s: {server.log_text()[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(data_dir: Path, **options: object) -> Iterator[ServerProcess]:
    server = start_server(data_dir, **options)  # type: ignore[arg-type]
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
