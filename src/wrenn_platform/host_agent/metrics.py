"""Per-capsule resource metrics: three ring-buffer tiers fed by one sampler.

Tiers (the contract's `getCapsuleMetrics`):
- raw: one point per sample (every 0.5 s), the last 10 minutes — ranges `5m`, `10m`;
- 30 s averages, the last 2 hours — ranges `1h`, `2h`;
- 5 min averages, the last 24 hours — ranges `6h`, `12h`, `24h`.

Averages are over buckets aligned to wall-clock multiples of their width, so two capsules' points
line up. The bucket still filling is served as the newest point of its tier, so a fresh capsule
has data in every range at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wrenn_platform.host_agent.runtime.base import ResourceSample

RAW_INTERVAL_S = 0.5
RAW_RETENTION_S = 600
MID_BUCKET_S = 30
MID_RETENTION_S = 2 * 3600
LOW_BUCKET_S = 300
LOW_RETENTION_S = 24 * 3600

# range name → (tier, window in seconds)
RANGES: dict[str, tuple[str, int]] = {
    "5m": ("raw", 300),
    "10m": ("raw", 600),
    "1h": ("30s", 3600),
    "2h": ("30s", 7200),
    "6h": ("5m", 6 * 3600),
    "12h": ("5m", 12 * 3600),
    "24h": ("5m", 24 * 3600),
}


@dataclass(frozen=True)
class Point:
    timestamp: float
    cpu_pct: float
    mem_bytes: int
    disk_bytes: int


@dataclass
class _Bucket:
    start: float
    count: int = 0
    cpu: float = 0.0
    mem: int = 0
    disk: int = 0

    def add(self, p: Point) -> None:
        self.count += 1
        self.cpu += p.cpu_pct
        self.mem += p.mem_bytes
        self.disk += p.disk_bytes

    def average(self) -> Point:
        n = self.count
        return Point(self.start, self.cpu / n, round(self.mem / n), round(self.disk / n))


@dataclass
class _AveragingTier:
    """Averages of fixed-width, wall-clock-aligned buckets, the newest `capacity` kept."""

    width: int
    capacity: int
    points: deque[Point] = field(init=False)
    current: _Bucket | None = None

    def __post_init__(self) -> None:
        self.points = deque(maxlen=self.capacity)

    def add(self, p: Point) -> None:
        start = math.floor(p.timestamp / self.width) * self.width
        if self.current is not None and self.current.start != start:
            self.points.append(self.current.average())
            self.current = None
        if self.current is None:
            self.current = _Bucket(start)
        self.current.add(p)

    def series(self) -> list[Point]:
        out = list(self.points)
        if self.current is not None:
            out.append(self.current.average())
        return out


class CapsuleMetrics:
    """The three tiers of one capsule. `add` takes derived points (CPU already a percentage)."""

    def __init__(self) -> None:
        self.raw: deque[Point] = deque(maxlen=int(RAW_RETENTION_S / RAW_INTERVAL_S))
        self.mid = _AveragingTier(MID_BUCKET_S, MID_RETENTION_S // MID_BUCKET_S)
        self.low = _AveragingTier(LOW_BUCKET_S, LOW_RETENTION_S // LOW_BUCKET_S)

    def add(self, p: Point) -> None:
        self.raw.append(p)
        self.mid.add(p)
        self.low.add(p)

    def query(self, range_name: str, now: float) -> list[Point]:
        """Points of the tier serving `range_name` whose timestamps fall in the last window."""
        tier, window = RANGES[range_name]
        series = list(self.raw) if tier == "raw" else (self.mid if tier == "30s" else self.low).series()
        since = now - window
        return [p for p in series if p.timestamp >= since]


class CpuRate:
    """Turns cumulative CPU seconds into a percentage of the capsule's vCPUs since the last sample."""

    def __init__(self, vcpus: int) -> None:
        self.vcpus = max(1, vcpus)
        self._last: tuple[float, float] | None = None  # (monotonic time, cpu seconds)

    def update(self, mono: float, cpu_seconds: float) -> float:
        last, self._last = self._last, (mono, cpu_seconds)
        if last is None or mono <= last[0]:
            return 0.0
        pct = (cpu_seconds - last[1]) / ((mono - last[0]) * self.vcpus) * 100.0
        return min(100.0, max(0.0, pct))


class MetricsStore:
    """Metrics of every capsule on the host, fed by `sample_all` (called every RAW_INTERVAL_S)."""

    def __init__(self) -> None:
        self._metrics: dict[str, CapsuleMetrics] = {}
        self._rates: dict[str, CpuRate] = {}

    def track(self, capsule_id: str, vcpus: int) -> None:
        self._metrics.setdefault(capsule_id, CapsuleMetrics())
        self._rates[capsule_id] = CpuRate(vcpus)

    def forget(self, capsule_id: str) -> None:
        self._metrics.pop(capsule_id, None)
        self._rates.pop(capsule_id, None)

    def reset_rate(self, capsule_id: str) -> None:
        """After a pause, the next sample starts a new CPU interval (frozen time is not idle time)."""
        rate = self._rates.get(capsule_id)
        if rate is not None:
            self._rates[capsule_id] = CpuRate(rate.vcpus)

    def record(self, capsule_id: str, sample: ResourceSample, wall: float, mono: float) -> Point | None:
        metrics, rate = self._metrics.get(capsule_id), self._rates.get(capsule_id)
        if metrics is None or rate is None:
            return None
        point = Point(wall, rate.update(mono, sample.cpu_seconds), sample.memory_bytes, sample.disk_bytes)
        metrics.add(point)
        return point

    def query(self, capsule_id: str, range_name: str, now: float) -> list[Point] | None:
        metrics = self._metrics.get(capsule_id)
        return None if metrics is None else metrics.query(range_name, now)

    def sample_all(
        self,
        capsule_ids: list[str],
        sample: Callable[[str], ResourceSample],
        wall: float,
        mono: float,
    ) -> dict[str, Exception]:
        """Sample each capsule; returns the capsules whose sampling failed, with the error."""
        failures: dict[str, Exception] = {}
        for capsule_id in capsule_ids:
            try:
                self.record(capsule_id, sample(capsule_id), wall, mono)
            except Exception as exc:
                failures[capsule_id] = exc
        return failures
