"""The capsule API end to end (REST over loopback to an embedded server in its own process) vs the
same work through the host agent in process (`LocalAgentClient`), measured in the same run.

    .venv/bin/python bench/api_bench.py [--runs 20] [--exec-samples 300] [--clients 50]
        [--capsules 20] [--seconds 60] [--size-mib 1024]

Needs root (namespace runtime) and the built `minimal` template. Prints min/median/max and the
ratio API/agent for:
- REST create → first exec of `true` (POST /v1/capsules, then exec until it answers);
- REST exec of `true`, sequential, one client;
- throughput: N capsules, M concurrent clients (keep-alive connections of `wrk`, see load_client.py;
  `--load-client python` for the former httpx client) running exec of `true` for S seconds (errors,
  exec/s, p50/p99), and where the CPU went meanwhile (server, capsules, load client, rest);
- a streaming upload and download of SIZE MiB (`/files/stream/write`, `/files/stream/read`):
  throughput and the server's RSS before, peak in the first and in the second half.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import httpx
from _measure import RssSampler, cpu_seconds, percentile  # bench/ is sys.path[0]
from load_client import CpuSplit, LoadResult, ensure_wrk, run_wrk  # bench/ is sys.path[0]

from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.migrate import upgrade
from wrenn_platform.control_plane.db.models import ApiKey, Team
from wrenn_platform.control_plane.security import new_api_key, sha256_hex
from wrenn_platform.host_agent.daemon import AgentConfig, build_agent
from wrenn_platform.host_agent.local_client import LocalAgentClient
from wrenn_platform.host_agent.templates import DEFAULT_CACHE_DIR
from wrenn_platform.wire.agent import REMOVE, CreateCapsuleRequest, ExecRequest, RemoveRequest

CHUNK = 1024 * 1024
ROOT = Path("/tmp/wrenn-api-bench")
LAUNCH = (  # the HTTP stack of `wrenn server`
    "import os, uvicorn\n"
    "from wrenn_platform.cli.server import HTTP, LOOP\n"
    "from wrenn_platform.control_plane.app import create_app\n"
    "uvicorn.run(create_app(), host='127.0.0.1', port=int(os.environ['WRENN_PORT']), log_level='warning',\n"
    "            timeout_keep_alive=int(os.environ['BENCH_KEEP_ALIVE']), loop=LOOP, http=HTTP)\n"
)


def summary(name: str, values: list[float], unit: str, baseline: list[float] | None = None) -> str:
    med = statistics.median(values)
    line = f"{name:<36} min {min(values):9.2f}  median {med:9.2f}  max {max(values):9.2f} {unit}"
    if baseline:
        base = statistics.median(baseline)
        line += f"   | agent median {base:.2f} {unit}, ratio API/agent {med / base:.2f}"
    return line


def make_work_dir() -> Path:
    """Capsule processes (unprivileged uids) must traverse to their files: not a 0700 temp dir."""
    ROOT.mkdir(mode=0o755, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT))
    work.chmod(0o755)
    return work


async def prepare_database(url: str) -> str:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as db:
            team = Team(name="bench")
            db.add(team)
            await db.flush()
            key, prefix = new_api_key()
            db.add(ApiKey(team_id=team.id, name="bench", key_hash=sha256_hex(key), key_prefix=prefix))
            await db.commit()
            return key
    finally:
        await engine.dispose()


def start_server(work: Path, database_url: str, keep_alive_s: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WRENN_PORT": str(port), "WRENN_DATA_DIR": str(work / "server"),
           "WRENN_DATABASE_URL": database_url, "WRENN_RUNTIME": "namespace", "WRENN_EMBEDDED_AGENT": "true",
           "WRENN_CACHE_DIR": str(DEFAULT_CACHE_DIR), "WRENN_SECURE_COOKIES": "false",
           "BENCH_KEEP_ALIVE": str(keep_alive_s),
           # the bench measures the API, not the team limits: one key and team drive all the load
           "WRENN_API_KEY_REQUESTS_PER_SECOND": "0", "WRENN_TEAM_MAX_CAPSULES": "0"}
    popen = subprocess.Popen([sys.executable, "-c", LAUNCH], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1500):
        if popen.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return popen, url
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server did not start")


async def api_create_first_exec(api: httpx.AsyncClient) -> tuple[float, str]:
    started = time.perf_counter()
    r = await api.post("/v1/capsules", json={"memory_mb": 256})
    r.raise_for_status()
    cid = r.json()["id"]
    while True:
        r = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})
        if r.status_code == 200:
            return (time.perf_counter() - started) * 1000, cid
        if r.status_code != 409:
            raise RuntimeError(r.text)
        await asyncio.sleep(0.002)


async def api_destroy(api: httpx.AsyncClient, cids: list[str]) -> None:
    for cid in cids:
        await api.delete(f"/v1/capsules/{cid}")
    pending = set(cids)
    while pending:
        for cid in list(pending):
            if (await api.get(f"/v1/capsules/{cid}")).json()["status"] in ("stopped", "error", "missing"):
                pending.discard(cid)
        await asyncio.sleep(0.05)


async def throughput(url: str, key: str, cids: list[str], clients: int, seconds: float) -> LoadResult:
    """The same load from this process over httpx (costs more CPU than the server it loads)."""
    cpu0 = cpu_seconds(os.getpid())
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []  # the first few failures, to say what they were
    deadline = time.monotonic() + seconds
    # Idle connections are dropped by the client before the server's keep-alive (5 s) can close them under a
    # request in flight (that race shows as ReadError when both event loops lag under load).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=30) as api:

        async def worker(i: int) -> None:
            nonlocal errors
            cid = cids[i % len(cids)]
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                why = ""
                try:
                    r = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})
                    if r.status_code != 200 or r.json()["exit_code"] != 0:
                        why = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                latencies.append((time.perf_counter() - t0) * 1000)
                if why:
                    errors += 1
                    if len(samples) < 5:
                        samples.append(why)

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    return LoadResult(count=len(latencies), errors=errors, rate=len(latencies) / elapsed,
                      p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99), max=max(latencies),
                      client_cpu_s=cpu_seconds(os.getpid()) - cpu0, samples=samples)


async def multipart_body(path: str, size: int, boundary: str) -> AsyncIterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    block = b"\0" * CHUNK
    for _ in range(size // CHUNK):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def transfer(api: httpx.AsyncClient, cid: str, pid: int, size: int) -> dict[str, object]:
    boundary = secrets.token_hex(8)
    with RssSampler(pid) as up_rss:
        t0 = time.perf_counter()
        r = await api.post(f"/v1/capsules/{cid}/files/stream/write",
                           content=multipart_body("/tmp/big.bin", size, boundary),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=600)
        up_s = time.perf_counter() - t0
    r.raise_for_status()
    with RssSampler(pid) as down_rss:
        t0 = time.perf_counter()
        received = 0
        async with api.stream("POST", f"/v1/capsules/{cid}/files/stream/read", json={"path": "/tmp/big.bin"},
                              timeout=600) as resp:
            resp.raise_for_status()
            async for chunk in resp.aiter_raw():
                received += len(chunk)
        down_s = time.perf_counter() - t0
    assert received == size, (received, size)
    await api.post(f"/v1/capsules/{cid}/files/remove", json={"path": "/tmp/big.bin"})
    mib = size / CHUNK
    return {"up": mib / up_s, "down": mib / down_s, "up_rss": (up_rss.samples[0], *up_rss.halves()),
            "down_rss": (down_rss.samples[0], *down_rss.halves())}


async def agent_baseline(work: Path, runs: int, samples: int, size: int) -> dict[str, list[float]]:
    agent = build_agent(AgentConfig(data_dir=work / "agent", runtime="namespace", host_id="host-bench"))
    await agent.start()
    client = LocalAgentClient(agent)
    out: dict[str, list[float]] = {"create": [], "exec": [], "up": [], "down": []}
    made: list[str] = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            info = await client.create(CreateCapsuleRequest(memory_mb=256))
            await client.exec(info.id, ExecRequest(cmd="true"))
            out["create"].append((time.perf_counter() - t0) * 1000)
            made.append(info.id)
        cid = made[0]
        for _ in range(samples):
            t0 = time.perf_counter()
            await client.exec(cid, ExecRequest(cmd="true"))
            out["exec"].append((time.perf_counter() - t0) * 1000)
        if size:

            async def chunks() -> AsyncIterator[bytes]:
                block = b"\0" * CHUNK
                for _ in range(size // CHUNK):
                    yield block

            t0 = time.perf_counter()
            await client.write_file(cid, "/tmp/big.bin", chunks())
            out["up"].append(size / CHUNK / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            async with client.read_file(cid, "/tmp/big.bin") as stream:
                async for _ in stream:
                    pass
            out["down"].append(size / CHUNK / (time.perf_counter() - t0))
            await client.guest(cid, REMOVE, RemoveRequest(path="/tmp/big.bin"))
    finally:
        for cid in made:
            await client.destroy(cid)
        await agent.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--exec-samples", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--capsules", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep-alive", type=int, default=5,
                        help="server's HTTP keep-alive timeout in s (uvicorn's default is 5)")
    parser.add_argument("--load-client", choices=("wrk", "python"), default="wrk",
                        help="throughput load: wrk (installed with apt-get if missing) or this process's httpx")
    args = parser.parse_args()
    size = args.size_mib * CHUNK

    if args.load_client == "wrk":
        ensure_wrk()
    work = make_work_dir()
    print(f"machine: {os.cpu_count()} cores, shared with other work; load {os.getloadavg()}")
    baseline = await agent_baseline(work, args.runs, args.exec_samples, size)
    database_url = f"sqlite+aiosqlite:///{work / 'wrenn.db'}"
    key = await prepare_database(database_url)
    server, url = start_server(work, database_url, args.keep_alive)
    made: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
            creates: list[float] = []
            for _ in range(args.runs):
                ms, cid = await api_create_first_exec(api)
                creates.append(ms)
                made.append(cid)
            print(summary("REST create -> first exec", creates, "ms", baseline["create"]))
            execs: list[float] = []
            cpu0 = cpu_seconds(server.pid)
            for _ in range(args.exec_samples):
                t0 = time.perf_counter()
                r = await api.post(f"/v1/capsules/{made[0]}/exec", json={"cmd": "true"})
                execs.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
            print(summary("REST exec `true`", execs, "ms", baseline["exec"]))
            cpu_per_exec = (cpu_seconds(server.pid) - cpu0) / args.exec_samples * 1000
            print(f"{'':36} p99 {percentile(execs, 0.99):.2f} ms; server CPU {cpu_per_exec:.2f} ms per exec")
            while len(made) < args.capsules:
                made.append((await api_create_first_exec(api))[1])
            split = CpuSplit(server.pid)
            started = time.monotonic()
            cids = made[: args.capsules]
            if args.load_client == "wrk":
                load = await run_wrk(url, key, cids, args.clients, args.seconds)
            else:
                load = await throughput(url, key, cids, args.clients, args.seconds)
            elapsed = time.monotonic() - started
            for why in load.samples:
                print(f"  error: {why}")
            print(f"throughput ({args.load_client}): {args.capsules} capsules, {args.clients} clients, "
                  f"{args.seconds:.0f} s: {load.count} execs, {load.errors} errors, {load.rate:.1f} exec/s, "
                  f"p50 {load.p50:.1f} ms, p99 {load.p99:.1f} ms, max {load.max:.1f} ms; load {os.getloadavg()}")
            print("  " + split.report(elapsed, max(load.count, 1), args.load_client, load.client_cpu_s))
            if size:
                moved = await transfer(api, made[0], server.pid, size)
                up0, up1, up2 = cast(tuple[int, int, int], moved["up_rss"])
                d0, d1, d2 = cast(tuple[int, int, int], moved["down_rss"])
                up_rate, down_rate = cast(float, moved["up"]), cast(float, moved["down"])
                print(summary(f"stream upload {args.size_mib} MiB", [up_rate], "MiB/s", baseline["up"]))
                print(f"{'':36} server RSS {up0 / 1024:.0f} MiB before, peak {up1 / 1024:.0f} / "
                      f"{up2 / 1024:.0f} MiB in the first / second half")
                print(summary(f"stream download {args.size_mib} MiB", [down_rate], "MiB/s", baseline["down"]))
                print(f"{'':36} server RSS {d0 / 1024:.0f} MiB before, peak {d1 / 1024:.0f} / "
                      f"{d2 / 1024:.0f} MiB in the first / second half")
    finally:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
            await api_destroy(api, made)
        server.terminate()
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
