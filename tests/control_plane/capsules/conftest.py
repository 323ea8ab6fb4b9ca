"""The capsule API end to end: a real `wrenn server` app (embedded host agent, namespace runtime,
the built `minimal` template) served by uvicorn on a random loopback port in its own thread, over
SQLite and a fresh PostgreSQL database. Tests speak HTTP and WebSockets to it, nothing else.

Two tenants (teams A and B) each get an API key; team A also a browser session (cookie + CSRF).
Capsules are shared between tests where that does not weaken them (`capsule`), and every capsule
a test creates is destroyed through the API at the end (`capsules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from wrenn_platform.control_plane.app import create_app
from wrenn_platform.control_plane.auth.principal import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.migrate import upgrade
from wrenn_platform.control_plane.db.models import ApiKey, AuthSession, Capsule, Team, TeamMember, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.security import new_api_key, new_token, sha256_hex
from wrenn_platform.control_plane.settings import Settings
from wrenn_platform.host_agent.templates import TemplateInfo

from ..conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.root

# Capsule processes run as an unprivileged uid that must traverse to their files: not pytest's tmp.
TEST_ROOT = Path("/tmp/wrenn-cp-capsule-tests")
READY_TIMEOUT_S = 30.0


@dataclass
class Tenant:
    team_id: str
    api_key: str
    session_id: str | None = None
    csrf: str | None = None

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


class ServerThread:
    """`create_app(settings)` under uvicorn in a thread with its own event loop; restartable."""

    def __init__(self, settings: Settings, bind: str = "127.0.0.1") -> None:
        self.settings = settings
        self.bind = bind  # another address of this machine's own test namespaces' links, if needed
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.bind}:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.bind, self.port))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(self.settings), log_level="warning"))
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server thread died during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        self._sock = sock

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(120)
        self._sock.close()
        assert not self._thread.is_alive(), "server thread did not stop"


@dataclass
class Env:
    server: ServerThread
    database_url: str
    a: Tenant
    b: Tenant
    created: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, tenant: Tenant | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = tenant.headers() if tenant is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kw)

    def session_client(self, tenant: Tenant, with_csrf: bool = True) -> httpx.AsyncClient:
        assert tenant.session_id and tenant.csrf
        c = httpx.AsyncClient(base_url=self.url, timeout=60,
                              headers={CSRF_HEADER: tenant.csrf} if with_csrf else {})
        c.cookies.set(SESSION_COOKIE, tenant.session_id)
        c.cookies.set(CSRF_COOKIE, tenant.csrf)
        return c


async def _make_tenant(database_url: str, with_session: bool) -> Tenant:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            team = Team(name="Capsule tests")
            user = User(email=f"cap-{secrets.token_hex(4)}@example.com", name="Cap", is_active=True)
            db.add_all([team, user])
            await db.flush()
            user.default_team_id = team.id
            db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            key, prefix = new_api_key()
            db.add(ApiKey(team_id=team.id, created_by=user.id, name="tests", key_hash=sha256_hex(key),
                          key_prefix=prefix))
            tenant = Tenant(team_id=team.id, api_key=key)
            if with_session:
                sid, csrf = new_token(), new_token()
                db.add(AuthSession(sid_hash=sha256_hex(sid), user_id=user.id, team_id=team.id,
                                   expires_at=utcnow() + timedelta(hours=24)))
                tenant.session_id, tenant.csrf = sid, csrf
            await db.commit()
            return tenant
    finally:
        await engine.dispose()


async def capsule_status_in_db(database_url: str, capsule_id: str) -> str | None:
    """For what the API cannot show any more (a deleted team's capsules)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            capsule = await db.get(Capsule, capsule_id)
            return capsule.status if capsule is not None else None
    finally:
        await engine.dispose()


async def _create_pg_database() -> tuple[str, str]:
    name = f"wrenn_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def _drop_pg_database(name: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _migrate(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def cache_dir_of(template: TemplateInfo) -> Path:
    return template.path.parent.parent.parent  # <cache>/templates/minimal/<build>/


def make_settings(data_dir: Path, database_url: str, cache_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=data_dir, database_url=database_url, cache_dir=cache_dir, secure_cookies=False,
        embedded_agent=True, runtime="namespace", public_url="http://testserver",
        host_heartbeat_seconds=1.0, reconcile_interval_seconds=1.0, usage_sample_seconds=1,
        max_upload_bytes=1024 * 1024, warm_pool_size=0,
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def scratch_database(backend: str, root: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite under `root`, or a fresh PostgreSQL one (dropped after)."""
    if backend == "sqlite":
        database_url = f"sqlite+aiosqlite:///{root / 'wrenn.db'}"
        asyncio.run(_migrate(database_url))
        yield database_url
        return
    pg_name, database_url = asyncio.run(_create_pg_database())
    try:
        asyncio.run(_migrate(database_url))
        yield database_url
    finally:
        asyncio.run(_drop_pg_database(pg_name))


@contextlib.contextmanager
def scratch_root() -> Iterator[Path]:
    """A directory capsule users can traverse; asserts nothing is left mounted under it."""
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cp-", dir=TEST_ROOT))
    root.chmod(0o755)
    try:
        yield root
    finally:
        leftover = f" {root}/" in Path("/proc/self/mounts").read_text()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftover, f"mounts left under {root}"


@pytest.fixture(scope="package", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, minimal_template: TemplateInfo) -> Iterator[Env]:
    with scratch_root() as root, scratch_database(request.param, root) as database_url:
        a = asyncio.run(_make_tenant(database_url, with_session=True))
        b = asyncio.run(_make_tenant(database_url, with_session=False))
        server = ServerThread(make_settings(root / "data", database_url, cache_dir_of(minimal_template)))
        server.start()
        environment = Env(server=server, database_url=database_url, a=a, b=b)
        try:
            yield environment
        finally:
            try:
                _destroy_all(environment)
            finally:
                server.stop()


def _destroy_all(environment: Env) -> None:
    """Destroy, through the API, every capsule the tests made, and wait until they are stopped."""
    with httpx.Client(base_url=environment.url, timeout=60) as c:
        for tenant in (environment.a, environment.b):
            for cap in c.get("/v1/capsules", headers=tenant.headers()).json():
                if cap["status"] not in ("stopped", "stopping"):
                    c.delete(f"/v1/capsules/{cap['id']}", headers=tenant.headers())
        deadline = time.monotonic() + 60
        for tenant in (environment.a, environment.b):
            for cap in c.get("/v1/capsules", headers=tenant.headers()).json():
                while cap["status"] == "stopping" and time.monotonic() < deadline:
                    time.sleep(0.1)
                    cap = c.get(f"/v1/capsules/{cap['id']}", headers=tenant.headers()).json()
                assert cap["status"] in ("stopped", "error", "missing"), cap


@dataclass(frozen=True)
class Pace:
    """Deadlines scaled to a step measured in the same test, so that a busy machine stretches them
    as it stretches the work: a step measured at k times its `nominal_s` (its time on an idle
    machine) makes every later deadline k times longer, never shorter than written."""

    measured_s: float
    nominal_s: float

    @property
    def factor(self) -> float:
        return max(1.0, self.measured_s / self.nominal_s)

    def within(self, seconds: float) -> float:
        return seconds * self.factor


async def wait_status(client: httpx.AsyncClient, capsule_id: str, *wanted: str,
                      within: float = READY_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        resp = await client.get(f"/v1/capsules/{capsule_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["status"] in wanted:
            return body
        assert time.monotonic() < deadline, f"capsule stayed {body['status']}, wanted {wanted}: {body}"
        await asyncio.sleep(0.02)


async def create_running(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/capsules", json=body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "starting"
    return await wait_status(client, resp.json()["id"], "running")


async def destroy(client: httpx.AsyncClient, capsule_id: str) -> dict[str, Any]:
    resp = await client.delete(f"/v1/capsules/{capsule_id}")
    assert resp.status_code == 202, resp.text
    return await wait_status(client, capsule_id, "stopped")


@pytest.fixture
async def api(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """Team A over its API key."""
    async with env.client(env.a) as c:
        yield c


@pytest.fixture
async def other(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """Team B over its API key."""
    async with env.client(env.b) as c:
        yield c


@pytest.fixture(scope="package")
def shared_capsule(env: Env) -> Iterator[str]:
    """One running capsule of team A for the tests that only work inside it (exec, files...)."""
    with httpx.Client(base_url=env.url, headers=env.a.headers(), timeout=60) as c:
        resp = c.post("/v1/capsules", json={"metadata": {"purpose": "shared"}})
        assert resp.status_code == 202, resp.text
        capsule_id = resp.json()["id"]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while c.get(f"/v1/capsules/{capsule_id}").json()["status"] != "running":
            assert time.monotonic() < deadline, c.get(f"/v1/capsules/{capsule_id}").text
            time.sleep(0.02)
        yield capsule_id
        c.delete(f"/v1/capsules/{capsule_id}")


@pytest.fixture
async def capsules(api: httpx.AsyncClient) -> AsyncIterator[Callable[..., Any]]:
    """Create running capsules of team A for one test; destroyed (through the API) after it."""
    made: list[str] = []

    async def make(**body: Any) -> dict[str, Any]:
        cap = await create_running(api, **body)
        made.append(cap["id"])
        return cap

    yield make
    for capsule_id in made:
        status = (await api.get(f"/v1/capsules/{capsule_id}")).json()["status"]
        if status not in ("stopped", "stopping"):
            await api.delete(f"/v1/capsules/{capsule_id}")
        await wait_status(api, capsule_id, "stopped", "error", "missing")

