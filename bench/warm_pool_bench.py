"""The warm pool against the cold path, in one run of `wrenn server` (the shipped command, namespace
runtime, SQLite, its embedded agent keeping POOL capsules of the default shape warm).

    .venv/bin/python bench/warm_pool_bench.py [--pool 20] [--runs 20] [--burst 20] [--client-runs 10]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Needs root and the built `minimal` template. SQLite unless `--postgres` names a server to make a
fresh database on (dropped at the end). Prints min/median/max (and p99 where said) of:
- REST create → first exec of `true`, serial, interleaved: from the pool (`{}`, the default shape)
  and cold (`{"memory_mb": 256}`: a shape with no pool, the same work otherwise); the pool is
  refilled before each warm sample, so each claim meets a full pool;
- BURST concurrent creates → first exec, from a full pool and cold, against the serial medians;
- REST exec of `true` on a running capsule, p99, with the pool full and while it refills half of
  itself (rounds interleaved);
- the published client (`wrenn` 0.3.0, its own venv): `Capsule(wait=True)` then
  `commands.run("true")`, end to end, warm and cold;
- memory of a pooled capsule (its cgroup's usage), and the CPU the server and its pooled capsules
  use in 10 s of idleness with a full pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from _measure import cpu_seconds, percentile  # bench/ is sys.path[0]
from api_bench import api_destroy as destroy  # bench/ is sys.path[0]
from api_bench import make_work_dir, prepare_database

from wrenn_platform.host_agent.templates import DEFAULT_CACHE_DIR

WRENN = Path(sys.executable).with_name("wrenn")
CLIENT_PYTHON = DEFAULT_CACHE_DIR / "clients" / "wrenn-0.3.0" / "bin" / "python"  # made by tests/compat
COLD = {"memory_mb": 256}
WARM: dict[str, int] = {}


def stats(name: str, values: list[float], baseline: list[float] | None = None, p99: bool = False) -> str:
    med = statistics.median(values)
    line = f"{name:<44} min {min(values):8.1f}  median {med:8.1f}  max {max(values):8.1f} ms"
    if p99:
        line += f"  p99 {percentile(values, 0.99):8.1f}"
    if baseline:
        line += f"   | ratio to {statistics.median(baseline):.1f} ms: {med / statistics.median(baseline):.2f}"
    return line


def pinned_cache(work: Path) -> Path:
    """A cache whose `minimal` stays the build current now: the shared cache's `current` moves with
    every build on this machine, and a rebuilt template (rightly) empties the pool."""
    build = (DEFAULT_CACHE_DIR / "templates" / "minimal" / "current").resolve()
    cache = work / "cache"
    (cache / "templates" / "minimal").mkdir(parents=True)
    (cache / "templates" / "minimal" / "current").symlink_to(build)
    for d in (cache, cache / "templates", cache / "templates" / "minimal"):
        d.chmod(0o755)
    return cache


def start_server(work: Path, database_url: str, pool: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WRENN_DATABASE_URL": database_url, "WRENN_CACHE_DIR": str(pinned_cache(work)),
           "WRENN_SECURE_COOKIES": "false", "WRENN_WARM_POOL_SIZE": str(pool),
           "WRENN_WARM_POOL_MAX_LOAD": "1000"}  # a shared dev machine is always "loaded": measure the pool
    argv = [str(WRENN), "server", "--data-dir", str(work / "data"), "--host", "127.0.0.1", "--port", str(port),
            "--runtime", "namespace", "--log-level", "warning"]
    with open(work / "server.log", "wb") as log:
        popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"server exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return popen, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def pool_ready(work: Path) -> list[str]:
    ready = []
    for path in (work / "data" / "agent" / "pool").glob("*.json"):
        try:
            if json.loads(path.read_text())["status"] == "ready":
                ready.append(path.stem)
        except (OSError, ValueError, KeyError):
            continue
    return ready


async def wait_pool(work: Path, count: int, within: float = 600) -> list[str]:
    deadline = time.monotonic() + within
    while len(ready := pool_ready(work)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pool holds {len(ready)}, wanted {count}")
        await asyncio.sleep(0.05)
    return ready


async def create_first_exec(api: httpx.AsyncClient, body: dict[str, int]) -> tuple[float, str, str]:
    """ms from POST /v1/capsules to the first exec of `true` answering, the id, the answered status."""
    started = time.perf_counter()
    r = await api.post("/v1/capsules", json=body)
    r.raise_for_status()
    cid, status = r.json()["id"], r.json()["status"]
    while True:
        r = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})
        if r.status_code == 200:
            return (time.perf_counter() - started) * 1000, cid, status
        if r.status_code != 409:
            raise RuntimeError(r.text)
        await asyncio.sleep(0.002)


async def exec_latencies(api: httpx.AsyncClient, cid: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        r = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})
        r.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def exec_under_refill(api: httpx.AsyncClient, work: Path, pool: int, rounds: int,
                            count: int) -> tuple[list[float], list[float]]:
    """Exec latency on a running capsule with the pool full (idle) and while it refills half of
    itself (the claimed capsules sit idle until the block ends), interleaved round by round."""
    busy_cid = (await create_first_exec(api, COLD))[1]
    quiet: list[float] = []
    refilling: list[float] = []
    try:
        for _ in range(rounds):
            await wait_pool(work, pool)
            quiet += await exec_latencies(api, busy_cid, count)
            claimed = [(await api.post("/v1/capsules", json=WARM)).json()["id"] for _ in range(pool // 2)]
            refilling += await exec_latencies(api, busy_cid, count)
            await destroy(api, claimed)
    finally:
        await destroy(api, [busy_cid])
    return quiet, refilling


CLIENT_SCRIPT = """
import json, sys, time
from wrenn import Capsule
memory_mb, runs = (json.loads(a) for a in sys.argv[1:3])
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    c = Capsule(wait=True, memory_mb=memory_mb)
    assert c.commands.run("true").exit_code == 0
    times.append((time.perf_counter() - t0) * 1000)
    Capsule.destroy(c.capsule_id)
    time.sleep(0.3)
print(json.dumps(times))
"""


def published_client(url: str, key: str, memory_mb: int | None, runs: int) -> list[float]:
    env = {**os.environ, "WRENN_API_KEY": key, "WRENN_BASE_URL": url}
    out = subprocess.run([str(CLIENT_PYTHON), "-c", textwrap.dedent(CLIENT_SCRIPT), json.dumps(memory_mb),
                          str(runs)], env=env, capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def cgroup_value(controller: str, capsule_id: str, name: str) -> int:
    return int(Path(f"/sys/fs/cgroup/{controller}/wrenn/{capsule_id}/{name}").read_text().split()[0])


async def fresh_postgres(admin_url: str, name: str) -> str:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def drop_postgres(admin_url: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--client-runs", type=int, default=10)
    parser.add_argument("--postgres", default="", help="admin URL (postgresql://...): a fresh database there "
                        "instead of SQLite")
    args = parser.parse_args()
    work = make_work_dir()
    database_url = f"sqlite+aiosqlite:///{work}/bench.db"
    if args.postgres:
        database_url = await fresh_postgres(args.postgres, f"warm_pool_bench_{os.getpid()}")
    key = await prepare_database(database_url)
    popen, url = start_server(work, database_url, args.pool)
    print(f"load average at start: {os.getloadavg()}; pool {args.pool}; database {database_url.split(':')[0]}")
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120) as api:
            t0 = time.monotonic()
            await wait_pool(work, args.pool)
            print(f"pool of {args.pool} filled {time.monotonic() - t0:.1f} s after the server answered")

            warm, cold, statuses = [], [], set()
            for _ in range(args.runs):
                await wait_pool(work, args.pool)
                ms, w_id, status = await create_first_exec(api, WARM)
                warm.append(ms)
                statuses.add(status)
                ms, c_id, _ = await create_first_exec(api, COLD)
                cold.append(ms)
                await destroy(api, [w_id, c_id])
            print(stats("serial create → first exec, cold", cold, p99=True))
            print(stats("serial create → first exec, warm pool", warm, cold, p99=True))
            print(f"  answered status of warm creates: {sorted(statuses)}")

            await wait_pool(work, args.pool)
            got = await asyncio.gather(*(create_first_exec(api, WARM) for _ in range(args.burst)))
            burst_warm = [g[0] for g in got]
            claimed = sum(g[2] == "running" for g in got)
            await destroy(api, [g[1] for g in got])
            print(stats(f"{args.burst} concurrent, warm pool", burst_warm, warm))
            print(f"  claimed from the pool: {claimed} of {args.burst}")
            got = await asyncio.gather(*(create_first_exec(api, COLD) for _ in range(args.burst)))
            burst_cold = [g[0] for g in got]
            await destroy(api, [g[1] for g in got])
            print(stats(f"{args.burst} concurrent, cold", burst_cold, cold))

            quiet, refilling = await exec_under_refill(api, work, args.pool, 3, 100)
            print(stats("REST exec `true`, pool full (idle)", quiet, p99=True))
            print(stats("REST exec `true`, pool refilling half", refilling, quiet, p99=True))
            print(f"  p99 ratio refilling/idle: {percentile(refilling, 0.99) / percentile(quiet, 0.99):.2f}")

            if CLIENT_PYTHON.exists():
                await wait_pool(work, args.pool)
                client_warm = published_client(url, key, None, args.client_runs)
                client_cold = published_client(url, key, COLD["memory_mb"], args.client_runs)
                print(stats("published client create+run, cold", client_cold))
                print(stats("published client create+run, warm pool", client_warm, client_cold))
            else:
                print(f"published client: {CLIENT_PYTHON} missing (tests/compat makes it)")

            ready = await wait_pool(work, args.pool)
            mem = [cgroup_value("memory", cid, "memory.usage_in_bytes") / 2**20 for cid in ready]
            print(f"memory per pooled capsule (cgroup usage): min {min(mem):.1f} median "
                  f"{statistics.median(mem):.1f} max {max(mem):.1f} MiB")
            await asyncio.sleep(3)  # past envd's settle (gc.freeze, malloc_trim)
            ready = pool_ready(work)
            server_cpu = cpu_seconds(popen.pid)
            pool_cpu = sum(cgroup_value("cpuacct", cid, "cpuacct.usage") for cid in ready)
            await asyncio.sleep(10)
            server_cpu = cpu_seconds(popen.pid) - server_cpu
            pool_cpu = sum(cgroup_value("cpuacct", cid, "cpuacct.usage") for cid in ready) - pool_cpu
            assert set(ready) <= set(pool_ready(work)), "the pool changed while idle"
            print(f"idle 10 s with {len(ready)} pooled: server {server_cpu / 10 * 100:.2f} % of a core, "
                  f"pooled capsules together {pool_cpu / 1e9 / 10 * 100:.3f} % of a core")
    finally:
        popen.terminate()
        popen.wait(60)
        shutil.rmtree(work, ignore_errors=True)
        if args.postgres:
            await drop_postgres(args.postgres, database_url.rsplit("/", 1)[1])


if __name__ == "__main__":
    asyncio.run(main())
