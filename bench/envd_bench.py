"""envd over loopback vs the same work done directly, through the host agent's `EnvdClient`.

    .venv/bin/python bench/envd_bench.py [--runs 5] [--rtt-samples 300] [--size-mib 1024] [--rtt-only]
                                         [--src DIR]   (DIR holds wrenn_platform/envd; e.g. an old one
                                                        from `git archive <rev> src/wrenn_platform/envd`)

Prints min/median/max per measurement and its ratio to the baseline measured in the same run:
- `true` round trip (Start → end of stream) vs `subprocess.run(["true"])`;
- stdout streaming of `head -c SIZE /dev/zero` vs reading the same pipe directly (raw socket client
  and `EnvdClient` in the JSON form; `EnvdClient` in its default, negotiated raw output form);
- file write (`POST /files`, streamed) and read (`GET /files`) vs os.write/os.read of the same file;
- envd's RSS before and the peak during each transfer (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from _measure import RssSampler, cpu_seconds, rss_kib  # bench/ is sys.path[0]

from wrenn_platform.host_agent.envd_client import EnvdClient, ProcessOutput

SRC = Path(__file__).resolve().parents[1] / "src"
CHUNK = 1024 * 1024
TOKEN = "bench-token"


def summary(name: str, values: list[float], unit: str, baseline: list[float] | None = None,
            higher_is_better: bool = False) -> str:
    med = statistics.median(values)
    line = f"{name:<34} min {min(values):9.2f}  median {med:9.2f}  max {max(values):9.2f} {unit}"
    if baseline:
        base = statistics.median(baseline)
        line += f"   | baseline median {base:.2f} {unit}, ratio envd/baseline {med / base:.2f}"
    return line


def start_envd(src: Path = SRC) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(src)}
    popen = subprocess.Popen(
        [sys.executable, "-S", "-m", "wrenn_platform.envd", "--host", "127.0.0.1", "--port", str(port),
         "--access-token", TOKEN], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(500):
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 204:
                return popen, url
        except httpx.HTTPError:
            time.sleep(0.02)
    raise RuntimeError("envd did not start")


class RawConnect:
    """A minimal keep-alive Connect client on a plain socket: measures envd without httpx."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb", buffering=4 * CHUNK)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def start(self, cmd: str, args: list[str]) -> int:
        """Run a process to its end; returns the stdout byte count (base64-decoded)."""
        message = json.dumps({"process": {"cmd": cmd, "args": args}, "stdin": False}).encode()
        body = struct.pack(">BI", 0, len(message)) + message
        head = (
            "POST /process.Process/Start HTTP/1.1\r\nHost: envd\r\n"
            f"X-Access-Token: {TOKEN}\r\nContent-Type: application/connect+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        while self.file.readline() not in (b"\r\n", b""):
            pass
        pending = bytearray()
        total = 0
        while True:
            size = int(self.file.readline().split(b";")[0], 16)
            if size == 0:
                self.file.readline()
                break
            pending += self.file.read(size)
            self.file.readline()
            offset = 0
            while len(pending) - offset >= 5:
                _, length = struct.unpack_from(">BI", pending, offset)
                if len(pending) - offset < 5 + length:
                    break
                payload = bytes(pending[offset + 5 : offset + 5 + length])
                offset += 5 + length
                if payload.startswith(b'{"event":{"data":{"stdout":"'):
                    total += len(base64.b64decode(payload[28:-4]))
            del pending[:offset]
        return total


async def bench_rtt(client: EnvdClient, samples: int) -> tuple[list[float], list[float]]:
    for _ in range(20):  # warm up the connection pool and envd
        await client.run("true")
    envd_ms: list[float] = []
    base_ms: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter()
        result = await client.run("true")
        envd_ms.append((time.perf_counter() - t0) * 1000)
        assert result.exit_code == 0
        base_ms.append(baseline_true_ms())
    return envd_ms, base_ms


def baseline_true_ms() -> float:
    t0 = time.perf_counter()
    subprocess.run(["true"], check=True)
    return (time.perf_counter() - t0) * 1000


def raw_rtt(url: str, samples: int) -> tuple[list[float], list[float]]:
    raw = RawConnect(url)
    try:
        for _ in range(20):
            raw.start("true", [])
        envd_ms: list[float] = []
        base_ms: list[float] = []
        for _ in range(samples):
            t0 = time.perf_counter()
            raw.start("true", [])
            envd_ms.append((time.perf_counter() - t0) * 1000)
            base_ms.append(baseline_true_ms())
        return envd_ms, base_ms
    finally:
        raw.close()


def raw_stdout(url: str, size: int) -> float:
    raw = RawConnect(url)
    try:
        t0 = time.perf_counter()
        total = raw.start("head", ["-c", str(size), "/dev/zero"])
        elapsed = time.perf_counter() - t0
    finally:
        raw.close()
    assert total == size, total
    return size / elapsed / 1e6


async def bench_stdout(client: EnvdClient, size: int) -> float:
    total = 0
    t0 = time.perf_counter()
    async for event in client.start("head", ["-c", str(size), "/dev/zero"], stdin=False):
        if isinstance(event, ProcessOutput):
            total += len(event.data)
    elapsed = time.perf_counter() - t0
    assert total == size, total
    return size / elapsed / 1e6


def baseline_stdout(size: int) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE, bufsize=0)
    assert p.stdout is not None
    total = 0
    while data := p.stdout.read(CHUNK):
        total += len(data)
    p.wait()
    elapsed = time.perf_counter() - t0
    assert total == size
    return size / elapsed / 1e6


async def zeros(size: int) -> AsyncIterator[bytes]:
    block = bytes(CHUNK)
    for _ in range(size // CHUNK):
        yield block


async def bench_write(client: EnvdClient, path: str, size: int) -> float:
    t0 = time.perf_counter()
    await client.write_file(path, zeros(size))
    return size / (time.perf_counter() - t0) / 1e6


async def bench_read(client: EnvdClient, path: str, size: int) -> float:
    total = 0
    t0 = time.perf_counter()
    async for chunk in client.download(path):
        total += len(chunk)
    elapsed = time.perf_counter() - t0
    assert total == size
    return size / elapsed / 1e6


def baseline_write(path: str, size: int) -> float:
    block = bytes(CHUNK)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(size // CHUNK):
        os.write(fd, block)
    os.close(fd)
    return size / (time.perf_counter() - t0) / 1e6


def baseline_read(path: str, size: int) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    total = 0
    while data := os.read(fd, CHUNK):
        total += len(data)
    os.close(fd)
    assert total == size
    return size / (time.perf_counter() - t0) / 1e6


CPU_NOTES: list[str] = []


async def measure(
    runs: int, pid: int, fn: Callable[[], object], size: int = 0, name: str = ""
) -> tuple[list[float], str]:
    """Values of `runs` calls, and envd's RSS (MiB) per run: before → peak in 1st half / 2nd half.
    With `size`, also the CPU seconds envd and this process (the client) spent per GiB: on a
    loaded machine they say what the transfer would reach with a core each."""
    values: list[float] = []
    rss: list[str] = []
    envd_cpu = client_cpu = 0.0
    for _ in range(runs):
        before = rss_kib(pid)
        e0, c0 = cpu_seconds(pid), cpu_seconds(os.getpid())
        with RssSampler(pid, interval=0.02) as sampler:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
        envd_cpu += cpu_seconds(pid) - e0
        client_cpu += cpu_seconds(os.getpid()) - c0
        values.append(float(value))  # type: ignore[arg-type]
        first, second = sampler.halves()
        rss.append(f"{before / 1024:.0f}→{first / 1024:.0f}/{second / 1024:.0f}")
    if size:
        gib = runs * size / 2**30
        bound = runs * size / max(envd_cpu, client_cpu, 1e-9) / 1e6
        CPU_NOTES.append(
            f"  {name:<31} envd {envd_cpu / gib:.2f} s/GiB, client {client_cpu / gib:.2f} s/GiB"
            f" -> {bound:.0f} MB/s if each had a core"
        )
    return values, " ".join(rss)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rtt-samples", type=int, default=300)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rtt-only", action="store_true", help="only the `true` round trip")
    parser.add_argument("--src", type=Path, default=SRC, help="directory holding wrenn_platform/envd")
    args = parser.parse_args()
    size = args.size_mib * CHUNK
    popen, url = start_envd(args.src)
    try:
        async with EnvdClient(url, TOKEN, timeout=120) as client:
            print(f"envd pid {popen.pid}, {os.cpu_count()} cores, transfer size {args.size_mib} MiB, "
                  f"{args.runs} runs each")
            raw_ms, raw_base_ms = raw_rtt(url, args.rtt_samples)
            envd_ms, base_ms = await bench_rtt(client, args.rtt_samples)
            print(summary("true round trip (raw socket)", raw_ms, "ms", raw_base_ms))
            print(summary("true round trip (EnvdClient)", envd_ms, "ms", base_ms))
            print(summary("true round trip (subprocess.run)", base_ms + raw_base_ms, "ms"))
            if args.rtt_only:
                return
            rss0 = rss_kib(popen.pid)

            raw_out, peak_raw = await measure(
                args.runs, popen.pid, lambda: raw_stdout(url, size), size, "stdout (raw socket)"
            )
            stdout, peak_stdout = await measure(
                args.runs, popen.pid, lambda: bench_stdout(client, size), size, "stdout (EnvdClient)"
            )
            async with EnvdClient(url, TOKEN, timeout=120, raw_output=False) as json_client:
                stdout_json, peak_json = await measure(
                    args.runs,
                    popen.pid,
                    lambda: bench_stdout(json_client, size),
                    size,
                    "stdout (EnvdClient, JSON form)",
                )
            base_stdout, _ = await measure(args.runs, popen.pid, lambda: baseline_stdout(size))
            print(summary("stdout streaming (raw socket)", raw_out, "MB/s", base_stdout, higher_is_better=True))
            print(summary("stdout streaming (EnvdClient)", stdout, "MB/s", base_stdout, higher_is_better=True))
            print(summary("stdout streaming (EnvdClient, JSON)", stdout_json, "MB/s", base_stdout,
                          higher_is_better=True))
            print(summary("stdout streaming (direct pipe)", base_stdout, "MB/s"))

            with tempfile.TemporaryDirectory(prefix="envd-bench-", dir="/var/tmp") as tmp:
                path = os.path.join(tmp, "blob")
                direct = os.path.join(tmp, "direct")
                writes, peak_write = await measure(
                    args.runs, popen.pid, lambda: bench_write(client, path, size), size, "file write"
                )
                base_writes, _ = await measure(args.runs, popen.pid, lambda: baseline_write(direct, size))
                reads, peak_read = await measure(
                    args.runs, popen.pid, lambda: bench_read(client, path, size), size, "file read"
                )
                base_reads, _ = await measure(args.runs, popen.pid, lambda: baseline_read(direct, size))
            print(summary("file write (envd)", writes, "MB/s", base_writes, higher_is_better=True))
            print(summary("file write (direct)", base_writes, "MB/s"))
            print(summary("file read (envd)", reads, "MB/s", base_reads, higher_is_better=True))
            print(summary("file read (direct)", base_reads, "MB/s"))
            print(f"envd RSS, MiB, {args.size_mib} MiB per transfer (before → peak in 1st half / 2nd half):")
            print(f"  at start {rss0 / 1024:.0f}")
            print(f"  stdout (raw socket) {peak_raw}")
            print(f"  stdout (EnvdClient) {peak_stdout}")
            print(f"  stdout (JSON form)  {peak_json}")
            print(f"  file write          {peak_write}")
            print(f"  file read           {peak_read}")
            print("CPU time per GiB transferred (user+sys):")
            print("\n".join(CPU_NOTES))
    finally:
        popen.terminate()
        popen.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
