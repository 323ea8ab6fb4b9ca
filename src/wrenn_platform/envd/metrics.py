"""Guest resource usage for `GET /metrics`, read from /proc and statvfs."""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Metrics:
    def __init__(self, disk_path: str = "/") -> None:
        self._disk_path = disk_path
        self._last_cpu: tuple[int, int] | None = None

    @staticmethod
    def _cpu_times() -> tuple[int, int]:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    def _cpu_pct(self) -> float:
        total, idle = self._cpu_times()
        if self._last_cpu is None:
            prev_total, prev_idle = 0, 0
        else:
            prev_total, prev_idle = self._last_cpu
        self._last_cpu = (total, idle)
        busy = (total - prev_total) - (idle - prev_idle)
        span = total - prev_total
        return round(100.0 * busy / span, 2) if span > 0 else 0.0

    @staticmethod
    def _memory() -> tuple[int, int]:
        values: dict[str, int] = {}
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                key, _, rest = line.partition(b":")
                if key in (b"MemTotal", b"MemAvailable"):
                    values[key.decode()] = int(rest.split()[0]) * 1024
        total = values.get("MemTotal", 0)
        return total, total - values.get("MemAvailable", 0)

    def snapshot(self) -> dict[str, Any]:
        mem_total, mem_used = self._memory()
        vfs = os.statvfs(self._disk_path)
        disk_total = vfs.f_blocks * vfs.f_frsize
        disk_used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
        return {
            "ts": int(time.time()),
            "cpu_count": os.cpu_count() or 1,
            "cpu_used_pct": self._cpu_pct(),
            "mem_total": mem_total,
            "mem_used": mem_used,
            "disk_total": disk_total,
            "disk_used": disk_used,
        }
