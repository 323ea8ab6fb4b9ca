"""The port proxy: a small GET through `wrenn server`'s proxy vs the same GET made directly to the
capsule's address from the host, in one run; and auto-resume of a paused capsule to first byte.

    .venv/bin/python bench/proxy_bench.py [--samples 2000] [--seconds 10] [--connections 8] [--resumes 15]

Needs root (namespace runtime) and the built `minimal` template. Starts `wrenn server` (embedded
agent, namespace runtime, SQLite) in its own process, one capsule running the tests'
`capsule_app.py` (stdlib HTTP/1.1 server with keep-alive) on port 8000, then prints:
- latency of `GET /` (22-byte body) on one keep-alive connection, sequential, direct and proxied
  in alternating blocks: min/median/p99/max and the difference of the medians;
- `wrk` with C keep-alive connections for S seconds, direct then proxied: requests/s, p50/p99, and
  the `wrenn server` process's CPU per request (what the proxy costs, whatever else loads the machine);
- auto-resume: pause through the API, then a GET through the proxy on a new connection until the
  first byte of the response; baseline: the same GET to the running capsule.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _measure import cpu_seconds, percentile  # bench/ is sys.path[0]
from api_bench import make_work_dir, prepare_database  # bench/ is sys.path[0]
from load_client import ensure_wrk  # bench/ is sys.path[0]

from wrenn_platform.host_agent.templates import DEFAULT_CACHE_DIR

APP = Path(__file__).resolve().parent.parent / "tests" / "control_plane" / "proxy" / "capsule_app.py"
APP_PORT = 8000


def start_server(work: Path, database_url: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "WRENN_DATABASE_URL": database_url, "WRENN_CACHE_DIR": str(DEFAULT_CACHE_DIR)}
    proc = subprocess.Popen([sys.executable, "-m", "wrenn_platform.cli.main", "server", "--data-dir",
                             str(work / "server"), "--port", str(port), "--runtime", "namespace", "--log-level",
                             "warning"], env=env)
    for _ in range(3000):
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server did not start")


async def wait_status(api: httpx.AsyncClient, cid: str, status: str) -> dict[str, object]:
    for _ in range(3000):
        body: dict[str, object] = (await api.get(f"/v1/capsules/{cid}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise RuntimeError(f"capsule {cid} never became {status}")


async def prepare_capsule(api: httpx.AsyncClient) -> tuple[str, str]:
    r = await api.post("/v1/capsules", json={"timeout_sec": 0})
    r.raise_for_status()
    cid = str(r.json()["id"])
    info = await wait_status(api, cid, "running")
    r = await api.post(f"/v1/capsules/{cid}/files/write", files={"file": ("app.py", APP.read_bytes())},
                       data={"path": "/tmp/app.py"})
    r.raise_for_status()
    r = await api.post(f"/v1/capsules/{cid}/exec", json={"cmd": "python3", "args": ["/tmp/app.py", str(APP_PORT)],
                                                        "background": True})
    r.raise_for_status()
    for _ in range(300):
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((str(info["host_ip"]), APP_PORT)) == 0:
                return cid, str(info["host_ip"])
        await asyncio.sleep(0.05)
    raise RuntimeError("capsule server did not listen")


class KeepAliveClient:
    """A raw HTTP/1.1 client on one connection: as little client time in the numbers as possible."""

    def __init__(self, address: tuple[str, int], host: str) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self.buf = b""

    def get(self) -> bytes:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(rest) < length:
            rest += self.sock.recv(65536)
        body, self.buf = rest[:length], rest[length:]
        return body

    def close(self) -> None:
        self.sock.close()


def latency(direct: KeepAliveClient, proxied: KeepAliveClient, samples: int) -> tuple[list[float], list[float]]:
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    for client in (direct, proxied):
        for _ in range(50):
            assert client.get() == b"hello from the capsule"  # warm-up
    block = 100
    for _ in range(samples // block):
        for name, client in (("direct", direct), ("proxy", proxied)):
            for _ in range(block):
                t0 = time.perf_counter()
                client.get()
                times[name].append((time.perf_counter() - t0) * 1000)
    return times["direct"], times["proxy"]


def wrk(url: str, host: str | None, connections: int, seconds: float, server_pid: int) -> dict[str, float]:
    argv = [ensure_wrk(), "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency", url]
    if host:
        argv[1:1] = ["-H", f"Host: {host}"]
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    server_cpu = cpu_seconds(server_pid) - cpu_before

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "server_cpu_us": server_cpu / requests * 1e6, "p50": ms("50%"), "p99": ms("99%"),
            "errors": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if socket_errors else 0.0}


async def first_byte(port: int, host: str) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    first = await reader.read(1)
    elapsed = (time.perf_counter() - t0) * 1000
    rest = await reader.read()
    writer.close()
    if not (first + rest).startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {(first + rest)[:200]!r}")
    return elapsed


async def resumes(api: httpx.AsyncClient, cid: str, port: int, host: str, runs: int) -> tuple[list[float], list[float]]:
    woken, running = [], []
    for _ in range(runs):
        running.append(await first_byte(port, host))
        (await api.post(f"/v1/capsules/{cid}/pause")).raise_for_status()
        await wait_status(api, cid, "paused")
        woken.append(await first_byte(port, host))
        status = (await api.get(f"/v1/capsules/{cid}")).json()["status"]
        assert status == "running", status
    return woken, running


def line(name: str, values: list[float], unit: str = "ms") -> str:
    return (f"{name:<34} min {min(values):8.3f}  median {statistics.median(values):8.3f}  "
            f"p99 {percentile(values, 0.99):8.3f}  max {max(values):8.3f} {unit}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--resumes", type=int, default=15)
    args = parser.parse_args()

    work = make_work_dir()
    database_url = f"sqlite+aiosqlite:///{work / 'wrenn.db'}"
    key = await prepare_database(database_url)
    proc, port = start_server(work, database_url)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key},
                                     timeout=60) as api:
            cid, host_ip = await prepare_capsule(api)
            host = f"{APP_PORT}-{cid}.localhost:{port}"
            print(f"capsule {cid} at {host_ip}:{APP_PORT}; proxied as http://{host}/", flush=True)

            direct = KeepAliveClient((host_ip, APP_PORT), f"{host_ip}:{APP_PORT}")
            proxied = KeepAliveClient(("127.0.0.1", port), host)
            d, p = latency(direct, proxied, args.samples)
            direct.close()
            proxied.close()
            print(line("GET / direct (keep-alive)", d))
            print(line("GET / through the proxy", p))
            print(f"{'proxy - direct, medians':<34} {statistics.median(p) - statistics.median(d):8.3f} ms "
                  f"(ratio {statistics.median(p) / statistics.median(d):.2f})", flush=True)

            for name, url, h in (("direct", f"http://{host_ip}:{APP_PORT}/", None),
                                 ("proxy", f"http://127.0.0.1:{port}/", host)):
                r = wrk(url, h, args.connections, args.seconds, proc.pid)
                print(f"wrk {name:<7} {args.connections} conns {args.seconds:g} s: {r['rate']:9.1f} req/s  "
                      f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  non-2xx {r['errors']:.0f}  "
                      f"wrenn server CPU {r['server_cpu_us']:.0f} us/request"
                      f"{'  SOCKET ERRORS' if r['socket_errors'] else ''}", flush=True)

            woken, running = await resumes(api, cid, port, host, args.resumes)
            print(line("first byte, running capsule", running))
            print(line("first byte, paused (auto-resume)", woken))
            await api.delete(f"/v1/capsules/{cid}")
            await wait_status(api, cid, "stopped")
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
