"""`/metrics` ranges, `/v1/capsules/stats` and `/v1/capsules/usage` from real running capsules."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

SERIES_POINTS = {"5m": 10, "1h": 60, "6h": 72, "24h": 96, "30d": 120}


async def test_metrics_ranges(api: httpx.AsyncClient, shared_capsule: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        r = await api.get(f"/v1/capsules/{shared_capsule}/metrics")
        assert r.status_code == 200, r.text
        body = r.json()
        if len(body["points"]) >= 2:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.25)
    assert body["sandbox_id"] == shared_capsule and body["range"] == "10m"
    point = body["points"][-1]
    assert set(point) == {"timestamp_unix", "cpu_pct", "mem_bytes", "disk_bytes"}
    assert point["mem_bytes"] > 0 and 0 <= point["cpu_pct"] <= 100
    assert abs(point["timestamp_unix"] - time.time()) < 30
    for range_ in ("5m", "1h", "2h", "6h", "12h", "24h"):
        r = await api.get(f"/v1/capsules/{shared_capsule}/metrics", params={"range": range_})
        assert r.status_code == 200 and r.json()["range"] == range_, r.text
    r = await api.get(f"/v1/capsules/{shared_capsule}/metrics", params={"range": "3d"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


async def test_metrics_of_stopped_capsule_404(api: httpx.AsyncClient) -> None:
    from .conftest import create_running, destroy

    cap = await create_running(api)
    await destroy(api, cap["id"])
    r = await api.get(f"/v1/capsules/{cap['id']}/metrics")
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("range_", list(SERIES_POINTS))
async def test_stats(api: httpx.AsyncClient, shared_capsule: str, range_: str) -> None:
    r = await api.get("/v1/capsules/stats", params={"range": range_})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["range"] == range_
    running = [c for c in (await api.get("/v1/capsules")).json() if c["status"] == "running"]
    current = body["current"]
    assert current["running_count"] == len(running) >= 1
    assert current["vcpus_reserved"] == sum(c["vcpus"] for c in running)
    assert current["memory_mb_reserved"] == sum(c["memory_mb"] for c in running)
    peaks = body["peaks"]
    assert peaks["running_count"] >= current["running_count"] and peaks["memory_mb"] >= current["memory_mb_reserved"]
    series = body["series"]
    n = len(series["labels"])
    assert abs(n - SERIES_POINTS[range_]) <= 1
    assert len(series["running"]) == len(series["vcpus"]) == len(series["memory_mb"]) == n
    labels = [datetime.fromisoformat(x) for x in series["labels"]]
    assert labels == sorted(labels) and labels[-1] <= datetime.now(UTC)


async def test_stats_series_sees_the_shared_capsule(api: httpx.AsyncClient, shared_capsule: str) -> None:
    deadline = time.monotonic() + 10
    while True:  # the test server samples every second
        series = (await api.get("/v1/capsules/stats", params={"range": "5m"})).json()["series"]
        if max(series["running"]) >= 1:
            break
        assert time.monotonic() < deadline, series
        await asyncio.sleep(0.25)
    assert max(series["memory_mb"]) >= 512


async def test_stats_are_per_team(other: httpx.AsyncClient, shared_capsule: str) -> None:
    body = (await other.get("/v1/capsules/stats", params={"range": "5m"})).json()
    assert body["current"]["running_count"] == 0 and body["peaks"]["running_count"] == 0
    assert set(body["series"]["running"]) == {0}


async def test_stats_bad_range(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/capsules/stats", params={"range": "2d"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


async def test_usage(api: httpx.AsyncClient, other: httpx.AsyncClient, shared_capsule: str) -> None:
    today = datetime.now(UTC).date()
    deadline = time.monotonic() + 10
    while True:
        r = await api.get("/v1/capsules/usage")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["points"][-1]["cpu_minutes"] > 0:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.25)
    assert body["to"] == today.isoformat() and body["from"] == (today - timedelta(days=30)).isoformat()
    assert len(body["points"]) == 31
    last = body["points"][-1]
    assert last["date"] == today.isoformat() and last["ram_mb_minutes"] >= last["cpu_minutes"] * 64
    r = await api.get("/v1/capsules/usage", params={"from": today.isoformat(), "to": today.isoformat()})
    assert [p["date"] for p in r.json()["points"]] == [today.isoformat()]
    # another team with nothing running has nothing
    theirs = (await other.get("/v1/capsules/usage", params={"from": today.isoformat()})).json()
    assert theirs["points"] == [{"date": today.isoformat(), "cpu_minutes": 0, "ram_mb_minutes": 0}]
    for params in ({"from": "2026-13-01"}, {"from": "yesterday"},
                   {"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()},
                   {"from": date(2000, 1, 1).isoformat()}):
        r = await api.get("/v1/capsules/usage", params=params)
        assert r.status_code == 400, (params, r.text)
