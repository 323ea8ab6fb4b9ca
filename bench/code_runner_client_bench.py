"""The published client's `run_code` through the port proxy, against the same kernel protocol spoken
directly to the capsule's address, in one run (the proxy's share of a code-runner round trip).

    .venv/bin/python bench/code_runner_client_bench.py [--fresh 5] [--samples 300]

Needs root, the built `minimal` and `code-runner-beta` templates, the published client's venv (made
by the compat tests' setup, `tests/compat/published_client.py`) and `*.localhost` resolving to
loopback (libnss-myhostname). Prints min/median/max of:
- `Capsule()` (code-runner-beta, wait) → first `run_code("1+1")` answered, through the proxy;
- warm `run_code("1+1")` in one client process (its WebSocket reused), p50/p99; beside it the same
  `1+1` on another kernel of the same capsule, straight to its address (`tests/jupyter.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
from _measure import percentile  # bench/ is sys.path[0]
from api_bench import make_work_dir, prepare_database, start_server, summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.compat.published_client import ensure_client_venv  # the repository root is on the path only now
from tests.jupyter import Kernel

from wrenn_platform.host_agent.images import build_template

CLIENT_SCRIPT = """
import json, sys, time
from wrenn.code_runner import Capsule

fresh, samples = int(sys.argv[1]), int(sys.argv[2])
firsts = []
for _ in range(fresh):
    started = time.perf_counter()
    capsule = Capsule(wait=True)
    assert capsule.run_code("1+1").text == "2"
    firsts.append((time.perf_counter() - started) * 1000)
    capsule.destroy()
capsule = Capsule(wait=True)
for _ in range(10):
    capsule.run_code("1+1")
print(json.dumps({"capsule_id": capsule.capsule_id}), flush=True)
sys.stdin.readline()  # the bench says when: the proxied samples first, then its direct ones
warm = []
for _ in range(samples):
    started = time.perf_counter()
    assert capsule.run_code("1+1").text == "2"
    warm.append((time.perf_counter() - started) * 1000)
print(json.dumps({"firsts": firsts, "warm": warm}), flush=True)
sys.stdin.readline()
capsule.destroy()
"""


async def direct_round_trips(base: str, samples: int) -> list[float]:
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        kernel = await Kernel.start(http, base)
        try:
            for _ in range(10):
                await kernel.run("1+1")
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                if (await kernel.run("1+1")).text != "2":
                    raise RuntimeError("1+1 did not give 2")
                times.append((time.perf_counter() - started) * 1000)
            return times
        finally:
            await kernel.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", type=int, default=5)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()

    build_template("minimal")
    build_template("code-runner-beta")
    python = ensure_client_venv()
    work = make_work_dir()
    print(f"machine: {os.cpu_count()} cores, shared with other work; load {os.getloadavg()}")
    database_url = f"sqlite+aiosqlite:///{work / 'wrenn.db'}"
    key = await prepare_database(database_url)
    server, url = start_server(work, database_url, keep_alive_s=5)
    env = {name: value for name, value in os.environ.items() if not name.startswith("WRENN_")}
    env.update(WRENN_BASE_URL=url.replace("127.0.0.1", "localhost"), WRENN_API_KEY=key)
    client = await asyncio.create_subprocess_exec(str(python), "-c", CLIENT_SCRIPT, str(args.fresh),
                                                  str(args.samples), env=env, stdin=asyncio.subprocess.PIPE,
                                                  stdout=asyncio.subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        capsule_id = json.loads(await client.stdout.readline())["capsule_id"]
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
            capsule = (await api.get(f"/v1/capsules/{capsule_id}")).json()
        base = f"http://{capsule['host_ip']}:8888"
        # One after the other on the same capsule, so neither disturbs the other's numbers.
        client.stdin.write(b"\n")
        await client.stdin.drain()
        proxied = json.loads(await client.stdout.readline())
        direct = await direct_round_trips(base, args.samples)
        client.stdin.write(b"\n")
        await client.stdin.drain()
        await asyncio.wait_for(client.wait(), 120)
        print(summary("client: Capsule() -> first run_code", proxied["firsts"], "ms"))
        print(summary("client: warm run_code('1+1') (proxy)", proxied["warm"], "ms"))
        print(f"{'':36} p50 {percentile(proxied['warm'], 0.5):.2f} ms, p99 {percentile(proxied['warm'], 0.99):.2f} ms")
        print(summary("direct: warm 1+1 (capsule address)", direct, "ms"))
        print(f"{'':36} p50 {percentile(direct, 0.5):.2f} ms, p99 {percentile(direct, 0.99):.2f} ms; "
              f"ratio proxy/direct (p50) {percentile(proxied['warm'], 0.5) / percentile(direct, 0.5):.2f}")
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
        server.terminate()
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
