"""`code-runner-beta` through the real server (`wrenn server`'s HTTP stack in its own process, namespace
runtime), Jupyter spoken to at the capsule's address from this host as the published client speaks it
(`tests/jupyter.py`), and the warm round trips again through the port proxy
(`http://8888-{id}.localhost:{port}`, as the published client reaches it).

    .venv/bin/python bench/code_runner_bench.py [--fresh 5] [--samples 300]

Needs root and the built `minimal` and `code-runner-beta` templates. Prints min/median/max of:
- a fresh code-runner capsule to its first result: POST /v1/capsules → `running` (start command and
  readiness probe included) → a kernel as the published client gets one (the running `wrenn` kernel
  the start command warms, else POST /api/kernels) → `1+1` over the kernel WebSocket answers `2`;
  beside it, in the same run, a `minimal` capsule's REST create → first exec (the platform's floor);
- `1+1` round trip on a warm kernel (execute_request → IOPub `idle`), p50/p99; beside it the
  kernel protocol's floor, a `kernel_info_request` round trip on the same WebSocket; both again
  through the port proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
from _measure import percentile  # bench/ is sys.path[0]
from api_bench import api_create_first_exec, api_destroy, make_work_dir, prepare_database, start_server, summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.jupyter import Kernel  # the repository root is on the path only now

from wrenn_platform.host_agent.images import build_template

JUPYTER_PORT = 8888


async def fresh_to_first_result(api: httpx.AsyncClient, http: httpx.AsyncClient) -> tuple[dict[str, float], str]:
    """Milliseconds to `running`, then to a started kernel, then to the first result."""
    t0 = time.perf_counter()
    r = await api.post("/v1/capsules", json={"template": "code-runner-beta"})
    r.raise_for_status()
    cid = r.json()["id"]
    while True:
        capsule = (await api.get(f"/v1/capsules/{cid}")).json()
        if capsule["status"] != "starting":
            break
        await asyncio.sleep(0.005)
    if capsule["status"] != "running":
        raise RuntimeError(f"capsule {cid} is {capsule['status']}")
    t_running = time.perf_counter()
    kernel = await Kernel.reuse_or_start(http, f"http://{capsule['host_ip']}:{JUPYTER_PORT}")
    t_kernel = time.perf_counter()
    try:
        result = await kernel.run("1+1")
    finally:
        await kernel.close()
    if result.text != "2":
        raise RuntimeError(f"1+1 gave {result}")
    t_result = time.perf_counter()
    return {"running": (t_running - t0) * 1000, "kernel": (t_kernel - t_running) * 1000,
            "first": (t_result - t_kernel) * 1000, "total": (t_result - t0) * 1000}, cid


async def warm_round_trips(http: httpx.AsyncClient, base: str, samples: int) -> tuple[list[float], list[float]]:
    kernel = await Kernel.start(http, base)
    try:
        for _ in range(10):  # warm: imports, the first compile, the WebSocket's buffers
            await kernel.run("1+1")
            await kernel.round_trip()
        runs, floors = [], []
        for _ in range(samples):
            t0 = time.perf_counter()
            result = await kernel.run("1+1")
            runs.append((time.perf_counter() - t0) * 1000)
            if result.text != "2":
                raise RuntimeError(f"1+1 gave {result}")
            t0 = time.perf_counter()
            await kernel.round_trip()
            floors.append((time.perf_counter() - t0) * 1000)
        return runs, floors
    finally:
        await kernel.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", type=int, default=5, help="fresh code-runner capsules to first result")
    parser.add_argument("--samples", type=int, default=300, help="warm 1+1 round trips")
    args = parser.parse_args()

    build_template("minimal")
    build_template("code-runner-beta")
    work = make_work_dir()
    print(f"machine: {os.cpu_count()} cores, shared with other work; load {os.getloadavg()}")
    database_url = f"sqlite+aiosqlite:///{work / 'wrenn.db'}"
    key = await prepare_database(database_url)
    server, url = start_server(work, database_url, keep_alive_s=5)
    made: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120) as api, \
                httpx.AsyncClient(timeout=60, trust_env=False) as http:
            floor: list[float] = []
            phases: dict[str, list[float]] = {"running": [], "kernel": [], "first": [], "total": []}
            for _ in range(args.fresh):  # interleaved, so both see the same load
                ms, cid = await api_create_first_exec(api)
                floor.append(ms)
                made.append(cid)
                times, cid = await fresh_to_first_result(api, http)
                made.append(cid)
                for name, value in times.items():
                    phases[name].append(value)
            print(summary("fresh code-runner -> first result", phases["total"], "ms"))
            print(summary("  create -> running (Jupyter ready)", phases["running"], "ms"))
            print(summary("  kernel (the warm one, else a new one)", phases["kernel"], "ms"))
            print(summary("  first 1+1 on the new kernel", phases["first"], "ms"))
            print(summary("minimal: create -> first exec", floor, "ms"))
            print(f"{'':36} ratio code-runner/minimal (medians) "
                  f"{sorted(phases['total'])[len(floor) // 2] / sorted(floor)[len(floor) // 2]:.1f}")

            capsule = (await api.get(f"/v1/capsules/{made[-1]}")).json()
            runs, floors = await warm_round_trips(http, f"http://{capsule['host_ip']}:{JUPYTER_PORT}", args.samples)
            print(summary("warm 1+1 round trip", runs, "ms"))
            print(f"{'':36} p50 {percentile(runs, 0.5):.2f} ms, p99 {percentile(runs, 0.99):.2f} ms")
            print(summary("kernel_info round trip (floor)", floors, "ms"))
            print(f"{'':36} p50 {percentile(floors, 0.5):.2f} ms, p99 {percentile(floors, 0.99):.2f} ms; "
                  f"ratio 1+1/floor (p50) {percentile(runs, 0.5) / percentile(floors, 0.5):.2f}")

            # The same through the port proxy, as the published client reaches Jupyter.
            port = url.rsplit(":", 1)[1]
            proxied = f"http://{JUPYTER_PORT}-{capsule['id']}.localhost:{port}"
            runs_p, floors_p = await warm_round_trips(http, proxied, args.samples)
            print(summary("warm 1+1 through the port proxy", runs_p, "ms"))
            print(f"{'':36} p50 {percentile(runs_p, 0.5):.2f} ms, p99 {percentile(runs_p, 0.99):.2f} ms; "
                  f"proxy - direct (p50) {percentile(runs_p, 0.5) - percentile(runs, 0.5):.2f} ms")
            print(summary("kernel_info through the port proxy", floors_p, "ms"))
    finally:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
            await api_destroy(api, made)
        server.terminate()
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
