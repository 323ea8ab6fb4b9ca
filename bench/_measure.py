"""What several benchmarks measure alike: percentiles, a process's CPU time and RSS, RSS over a transfer."""

from __future__ import annotations

import os
import threading
import time


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) of `values`, interpolated between the two nearest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """A process's RSS every `interval` s while in use: flat means the second half peaks no higher."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kib(self.pid))
            time.sleep(self.interval)

    @property
    def peak(self) -> int:
        return max(self.samples)

    def halves(self) -> tuple[int, int]:
        middle = len(self.samples) // 2
        return max(self.samples[: middle or 1]), max(self.samples[middle:] or self.samples)

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_kib(self.pid))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
