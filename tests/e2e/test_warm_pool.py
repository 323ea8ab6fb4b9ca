"""The warm pool of the shipped server (namespace runtime): a create that matches the pool's key
gets a capsule that was started before it was asked for, already running in the answer, under
the pooled capsule's id, reachable only with a fresh access token; a request of another shape
takes the cold path; the pool refills; pooled capsules are destroyed on shutdown, re-adopted after
a crash, and replaced when their template is rebuilt.

What the pool holds is read where an operator reads it on the host: the pool's records under
`<data_dir>/agent/pool/` (status `ready`, the envd address and the pool's own access token).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wrenn_platform.host_agent.templates import TemplateInfo

from ..server_process import ServerProcess, create_account, open_dir, pinned_cache
from .conftest import Shipped, sh, wait_status

pytestmark = pytest.mark.root

POOL_SIZE = 2
SERVER_ENV = {"WRENN_WARM_POOL_SIZE": str(POOL_SIZE), "WRENN_WARM_POOL_MAX_LOAD": "1000"}


def pool_records(data_dir: Path) -> dict[str, dict[str, Any]]:
    records = {}
    for path in (data_dir / "agent" / "pool").glob("*.json"):
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced while we read it
    return records


def wait_ready(data_dir: Path, count: int, within: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        ready = {k: r for k, r in pool_records(data_dir).items() if r["status"] == "ready"}
        if len(ready) >= count:
            return ready
        assert time.monotonic() < deadline, f"the pool holds {len(ready)} ready capsules, wanted {count}"
        time.sleep(0.1)


def cgroup_exists(capsule_id: str) -> bool:
    return any(Path(f"/sys/fs/cgroup/{c}/wrenn/{capsule_id}").exists() for c in ("pids", "memory")) or \
        Path(f"/sys/fs/cgroup/wrenn/{capsule_id}").exists()


def envd_status(record: dict[str, Any], token: str) -> int:
    """What the capsule's envd answers to a call carrying `token` (as any caller on the host would)."""
    resp = httpx.post(f"{record['envd_url']}/process.Process/List", content=b"{}", timeout=10,
                      headers={"Content-Type": "application/json", "X-Access-Token": token})
    return resp.status_code


def data_dir(shipped: Shipped) -> Path:
    return shipped.server.data_dir


def test_a_matching_create_claims_a_warm_capsule_running_at_answer(shipped: Shipped, api: httpx.Client) -> None:
    ready = wait_ready(data_dir(shipped), POOL_SIZE)
    before = time.time()
    resp = api.post("/v1/capsules", json={"timeout_sec": 120, "metadata": {"job": "warm"}})
    assert resp.status_code == 202, resp.text
    cap = resp.json()
    assert cap["status"] == "running", cap
    assert cap["id"] in ready, "the record carries the pooled capsule's id"
    pooled = ready[cap["id"]]
    assert cap["timeout_sec"] == 120 and cap["metadata"]["job"] == "warm", cap
    started = time.mktime(time.strptime(cap["started_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert started >= before - 1, f"TTL and usage start at the claim, not when the pool started it: {cap}"
    out = sh(api, cap["id"], "hostname; id -un")
    assert out["exit_code"] == 0 and out["stdout"].split() == [cap["id"], "root"], out
    # The pool's token no longer opens the capsule: the claim set a fresh one.
    assert envd_status(pooled, pooled["envd_access_token"]) == 401
    assert cap["id"] not in pool_records(data_dir(shipped)), "a claimed capsule leaves the pool for good"
    assert api.delete(f"/v1/capsules/{cap['id']}").status_code == 202
    wait_status(api, cap["id"], "stopped")
    assert not cgroup_exists(cap["id"])


def test_the_pool_refills_and_never_hands_out_a_capsule_twice(shipped: Shipped, api: httpx.Client) -> None:
    seen: set[str] = set()
    other = create_account(shipped.server)
    with httpx.Client(base_url=shipped.url, headers=other.headers(), timeout=120) as api_b:
        for client in (api, api_b, api, api_b):
            wait_ready(data_dir(shipped), 1)
            resp = client.post("/v1/capsules", json={})
            assert resp.status_code == 202, resp.text
            cap = resp.json()
            assert cap["id"] not in seen
            seen.add(cap["id"])
            # A file one tenant leaves behind is in its own capsule only: no capsule is reused.
            assert sh(client, cap["id"], "test ! -e /root/left-behind && touch /root/left-behind")["exit_code"] == 0
        assert not seen & set(pool_records(data_dir(shipped)))
        wait_ready(data_dir(shipped), POOL_SIZE)
        for client in (api, api_b):
            for cap in client.get("/v1/capsules").json():
                client.delete(f"/v1/capsules/{cap['id']}")


def test_another_shape_takes_the_cold_path(shipped: Shipped, api: httpx.Client) -> None:
    ready = wait_ready(data_dir(shipped), POOL_SIZE)
    resp = api.post("/v1/capsules", json={"memory_mb": 256})
    assert resp.status_code == 202, resp.text
    cap = resp.json()
    assert cap["status"] == "starting" and cap["id"] not in ready, cap
    cap = wait_status(api, cap["id"], "running")
    assert cap["memory_mb"] == 256
    assert set(ready) <= set(pool_records(data_dir(shipped))), "the pool was not touched"
    api.delete(f"/v1/capsules/{cap['id']}")
    wait_status(api, cap["id"], "stopped")


@pytest.fixture
def own_server(minimal_template: TemplateInfo) -> Iterator[tuple[ServerProcess, Path]]:
    root = open_dir("warm-pool-")
    cache = pinned_cache(minimal_template, root)
    server = ServerProcess(root / "data", cache_dir=cache, env={**SERVER_ENV, "WRENN_WARM_POOL_SIZE": "1"})
    try:
        yield server, cache
    finally:
        server.stop()
    leftover = [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {root}/" in line]
    assert not leftover, f"mounts left under {root}: {leftover}"
    shutil.rmtree(root, ignore_errors=True)


def leaks(records: list[dict[str, Any]]) -> list[str]:
    """What is left on the host of the capsules these pool records described."""
    found = []
    mounts = Path("/proc/self/mounts").read_text()
    for rec in records:
        slot = rec["slot"]
        if cgroup_exists(rec["id"]):
            found.append(f"cgroup of {rec['id']}")
        if Path("/run/netns", slot["netns"]).exists():
            found.append(f"netns {slot['netns']}")
        if Path("/sys/class/net", slot["host_iface"]).exists():
            found.append(f"veth {slot['host_iface']}")
        if rec["state_dir"] and (rec["state_dir"] in mounts or Path(rec["state_dir"]).exists()):
            found.append(f"state of {rec['id']}")
    return found


def test_pooled_capsules_survive_a_crash_churn_and_go_at_shutdown(own_server: tuple[ServerProcess, Path]) -> None:
    server, _ = own_server
    server.start()
    ready = wait_ready(server.data_dir, 1)
    server.kill()  # no clean-up: the next start finds the pooled capsule alive
    server.start()
    again = wait_ready(server.data_dir, 1)
    assert set(again) == set(ready), "the pooled capsule was re-adopted, not replaced"
    seen = dict(again)
    account = create_account(server)
    with httpx.Client(base_url=server.url, headers=account.headers(), timeout=120) as api:
        for _ in range(4):  # claim, use, destroy: the pool turns over
            seen.update(wait_ready(server.data_dir, 1))
            cap = api.post("/v1/capsules", json={}).json()
            assert cap["status"] == "running" and cap["id"] in seen, cap
            assert sh(api, cap["id"], "true")["exit_code"] == 0
            assert api.delete(f"/v1/capsules/{cap['id']}").status_code == 202
            wait_status(api, cap["id"], "stopped")
        seen.update(wait_ready(server.data_dir, 1))
    server.stop()
    assert pool_records(server.data_dir) == {}, "shutdown destroys the pool"
    assert list((server.data_dir / "agent" / "capsules").glob("*.json")) == []
    assert leaks(list(seen.values())) == [], "pool churn and shutdown leave nothing of any capsule"


def test_a_rebuilt_template_replaces_the_pooled_capsules(own_server: tuple[ServerProcess, Path],
                                                         minimal_template: TemplateInfo) -> None:
    server, cache = own_server
    server.start()
    (old_id,) = wait_ready(server.data_dir, 1)
    # A rebuild writes a new build directory and moves `current` to it.
    rebuilt = cache / "templates" / "minimal" / "rebuilt"
    subprocess.run(["cp", "-a", str(minimal_template.path), str(rebuilt)], check=True)  # device nodes too
    link = cache / "templates" / "minimal" / "current"
    link.unlink()
    link.symlink_to(rebuilt)
    deadline = time.monotonic() + 120
    while True:
        ready = {k: r for k, r in pool_records(server.data_dir).items() if r["status"] == "ready"}
        if ready and old_id not in ready:
            break
        assert time.monotonic() < deadline, f"the pool still holds {sorted(ready)}"
        time.sleep(0.2)
    (record,) = ready.values()
    assert record["template_dir"] == str(rebuilt.resolve())
    assert not cgroup_exists(old_id)
