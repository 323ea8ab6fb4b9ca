"""envd's memory does not grow with the size of what goes through it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from wrenn_platform.host_agent.envd_client import EnvdClient, ProcessOutput

from .conftest import EnvdProcess

SIZE = 256 * 1024 * 1024
ALLOWED_GROWTH_KIB = 64 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    peak = [rss_kib(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


async def zeros() -> AsyncIterator[bytes]:
    block = bytes(1024 * 1024)
    for _ in range(SIZE // len(block)):
        yield block
        await asyncio.sleep(0)


async def test_memory_stays_flat_for_large_transfers(
    envd: EnvdProcess, client: EnvdClient, workdir: Path
) -> None:
    path = str(workdir / "big.bin")
    before = rss_kib(envd.pid)
    with peak_rss(envd.pid) as peak:
        await client.write_file(path, zeros())
        total = 0
        async for chunk in client.download(path):
            total += len(chunk)
        assert total == SIZE
        streamed = 0
        async for event in client.start("head", ["-c", str(SIZE), "/dev/zero"], stdin=False):
            if isinstance(event, ProcessOutput):
                streamed += len(event.data)
        assert streamed == SIZE
    assert peak[0] - before < ALLOWED_GROWTH_KIB, (before, peak[0])
