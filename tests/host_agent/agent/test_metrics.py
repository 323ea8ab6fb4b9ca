"""The three metric tiers, with arithmetic checked by hand on known inputs."""

from __future__ import annotations

import pytest

from wrenn_platform.host_agent.metrics import CapsuleMetrics, CpuRate, MetricsStore, Point
from wrenn_platform.host_agent.runtime.base import ResourceSample

T0 = 1_699_999_800.0  # a multiple of 300 s: buckets of both averaging tiers start here
assert T0 % 300 == 0


def feed(m: CapsuleMetrics, seconds: float, cpu: float, mem: int, disk: int = 0, start: float = T0) -> None:
    for i in range(int(seconds / 0.5)):
        m.add(Point(start + i * 0.5, cpu, mem, disk))


def test_cpu_rate_is_normalised_to_vcpus() -> None:
    rate = CpuRate(vcpus=2)
    assert rate.update(10.0, 5.0) == 0.0  # first sample: no interval yet
    assert rate.update(10.5, 5.5) == pytest.approx(50.0)  # 0.5 CPU-s in 0.5 s on 2 vCPUs
    assert rate.update(11.0, 5.5) == 0.0
    assert rate.update(11.5, 7.0) == 100.0  # more than the vCPUs allow is capped


def test_raw_tier_keeps_ten_minutes_of_half_second_samples() -> None:
    m = CapsuleMetrics()
    feed(m, 15 * 60, cpu=1.0, mem=100)
    assert len(m.raw) == 1200
    assert m.raw[0].timestamp == T0 + 5 * 60  # the first five minutes fell out
    now = T0 + 15 * 60
    five = m.query("5m", now)
    assert five[0].timestamp == now - 300 and len(five) == 600
    assert len(m.query("10m", now)) == 1200


def test_thirty_second_averages() -> None:
    m = CapsuleMetrics()
    feed(m, 30, cpu=10.0, mem=1000, disk=7)  # bucket [T0, T0+30)
    feed(m, 30, cpu=30.0, mem=3000, disk=7, start=T0 + 30)  # bucket [T0+30, T0+60)
    m.add(Point(T0 + 60, 0.0, 0, 0))  # opens the third bucket
    series = m.query("1h", T0 + 61)
    assert [(p.timestamp, p.cpu_pct, p.mem_bytes, p.disk_bytes) for p in series] == [
        (T0, 10.0, 1000, 7),
        (T0 + 30, 30.0, 3000, 7),
        (T0 + 60, 0.0, 0, 0),  # the bucket still filling is served as the newest point
    ]


def test_mixed_bucket_average() -> None:
    m = CapsuleMetrics()
    for i, cpu in enumerate([0.0, 10.0, 20.0, 50.0]):
        m.add(Point(T0 + i, cpu, 100 * (i + 1), 0))
    (p,) = m.query("2h", T0 + 4)
    assert p.cpu_pct == pytest.approx(20.0)  # (0+10+20+50)/4
    assert p.mem_bytes == 250  # (100+200+300+400)/4


def test_five_minute_averages_and_retention() -> None:
    m = CapsuleMetrics()
    # 10 min: first 5 min at 20 %, next 5 min at 60 %.
    feed(m, 300, cpu=20.0, mem=10)
    feed(m, 300, cpu=60.0, mem=30, start=T0 + 300)
    m.add(Point(T0 + 600, 0.0, 0, 0))
    pts = m.query("6h", T0 + 600)
    assert [(p.timestamp, p.cpu_pct, p.mem_bytes) for p in pts] == [
        (T0, 20.0, 10), (T0 + 300, 60.0, 30), (T0 + 600, 0.0, 0)]
    # 30 s tier saw 20 full buckets plus the open one; only 2 h are kept.
    assert len(m.query("2h", T0 + 600)) == 21


def test_tier_capacities() -> None:
    m = CapsuleMetrics()
    # one sample per 30 s bucket for 3 h: the 30 s tier keeps 240 points (2 h) + the open bucket
    for i in range(360):
        m.add(Point(T0 + 30 * i, 1.0, 1, 1))
    assert len(m.mid.points) == 240
    assert len(m.low.points) == 35  # 3 h = 36 five-minute buckets, the last still open
    assert m.mid.points[0].timestamp == T0 + 30 * (359 - 240)
    now = T0 + 30 * 359
    assert len(m.query("1h", now)) == 121  # points in [now-3600, now]
    assert len(m.query("24h", now)) == 36


def test_store_turns_cumulative_cpu_into_percentages_and_forgets() -> None:
    store = MetricsStore()
    store.track("cl-a", vcpus=4)
    store.record("cl-a", ResourceSample(cpu_seconds=100.0, memory_bytes=1 << 20, disk_bytes=4096), T0, 1.0)
    p = store.record("cl-a", ResourceSample(cpu_seconds=101.0, memory_bytes=2 << 20, disk_bytes=8192),
                     T0 + 0.5, 1.5)
    assert p is not None and p.cpu_pct == pytest.approx(50.0)  # 1 CPU-s / (0.5 s x 4 vCPUs)
    assert [x.mem_bytes for x in store.query("cl-a", "5m", T0 + 1) or []] == [1 << 20, 2 << 20]
    failures = store.sample_all(["cl-a"], lambda _: (_ for _ in ()).throw(OSError("gone")), T0 + 1, 2.0)
    assert isinstance(failures["cl-a"], OSError)
    store.forget("cl-a")
    assert store.query("cl-a", "5m", T0 + 1) is None
