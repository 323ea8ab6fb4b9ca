"""The shipped server end to end: one `wrenn server` process per module (`tests/server_process.py`),
started as `make run` starts it, on the runtime the module names (`RUNTIME`, default namespace) with
the module's extra settings (`SERVER_ENV`) and platform templates (`PLATFORM_TEMPLATES`, besides
`minimal`), and an admin account with an API key on it. Tests speak
HTTP, WebSockets and SSE to it, read its log, and act on the host only to force a failure.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wrenn_platform.host_agent.images import build_template
from wrenn_platform.host_agent.templates import TemplateInfo

from ..server_process import Account, ServerProcess, create_account, open_dir, pinned_cache, start_server

pytestmark = pytest.mark.root


@dataclass
class Shipped:
    server: ServerProcess
    account: Account
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.account.headers(), timeout=120)


@pytest.fixture(scope="module")
def shipped(request: pytest.FixtureRequest, minimal_template: TemplateInfo) -> Iterator[Shipped]:
    root = open_dir(f"{request.module.__name__.rsplit('.', 1)[-1]}-")
    runtime = getattr(request.module, "RUNTIME", "namespace")
    # Platform templates besides `minimal` the module needs (`PLATFORM_TEMPLATES`), built or cached.
    others = [build_template(name).info for name in getattr(request.module, "PLATFORM_TEMPLATES", ())]
    server = start_server(root / "data", runtime=runtime, cache_dir=pinned_cache(minimal_template, root, *others),
                          env=getattr(request.module, "SERVER_ENV", None))
    try:
        shipped = Shipped(server, create_account(server), root)
        yield shipped
        _destroy_all(shipped)
    finally:
        server.stop()
    leftover = [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {root}/" in line]
    if not leftover:
        shutil.rmtree(root, ignore_errors=True)
    assert not leftover, f"mounts left under {root}: {leftover}"


@pytest.fixture
def api(shipped: Shipped) -> Iterator[httpx.Client]:
    with shipped.client() as client:
        yield client


def _destroy_all(shipped: Shipped) -> None:
    with shipped.client() as api:
        for cap in api.get("/v1/capsules").json():
            if cap["status"] not in ("stopped", "stopping"):
                api.delete(f"/v1/capsules/{cap['id']}")
        for cap in api.get("/v1/capsules").json():
            wait_status(api, cap["id"], "stopped", "error", "missing", within=120)


def wait_status(api: httpx.Client, capsule_id: str, *wanted: str, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        resp = api.get(f"/v1/capsules/{capsule_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["status"] in wanted:
            return body
        assert time.monotonic() < deadline, f"capsule stayed {body['status']}, wanted {wanted}: {body}"
        time.sleep(0.05)


def create_running(api: httpx.Client, within: float = 120, **body: Any) -> dict[str, Any]:
    resp = api.post("/v1/capsules", json=body)
    assert resp.status_code == 202, resp.text
    return wait_status(api, resp.json()["id"], "running", within=within)


def sh(api: httpx.Client, capsule_id: str, script: str, **options: Any) -> dict[str, Any]:
    resp = api.post(f"/v1/capsules/{capsule_id}/exec", json={"cmd": "/bin/sh", "args": ["-c", script], **options})
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def find_event(shipped: Shipped, matches: Callable[[dict[str, Any]], bool], within: float = 30) -> dict[str, Any]:
    """The first event of the team (replayed from the start, then live) that `matches`."""
    deadline = time.monotonic() + within
    headers = {**shipped.account.headers(), "Last-Event-ID": "0"}
    with httpx.Client(base_url=shipped.url, timeout=httpx.Timeout(within, read=within)) as http, \
            http.stream("GET", "/v1/events/stream", headers=headers) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line[5:])
                if matches(event):
                    return event
            assert time.monotonic() < deadline, "no such event in time"
    raise AssertionError("the event stream ended")


def log_lines(shipped: Shipped, *needles: str) -> list[str]:
    """The server's log lines that contain every one of `needles`."""
    return [line for line in shipped.server.log_text().splitlines() if all(n in line for n in needles)]


@contextlib.contextmanager
def mounted(*argv: str) -> Iterator[None]:
    """`mount ARGV...` on the host for the block (to force a failure), unmounted after."""
    import subprocess

    target = argv[-1]
    subprocess.run(["mount", *argv], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
