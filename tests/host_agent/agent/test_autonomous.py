"""What the agent does on its own: metrics sampling, TTL auto-pause, re-adoption after a restart —
and the events it reports for them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path

import httpx
import pytest

from wrenn_platform.agent_link.client import HttpAgentClient
from wrenn_platform.host_agent.network import leases
from wrenn_platform.host_agent.runtime.namespace import cgroups
from wrenn_platform.host_agent.service import AgentSettings
from wrenn_platform.host_agent.templates import TemplateInfo
from wrenn_platform.wire.agent import (
    KILL_PROCESS,
    LIST_PROCESSES,
    AgentError,
    BackgroundExecResponse,
    BadRequest,
    CreateCapsuleRequest,
    Empty,
    ExecRequest,
    ExecResponse,
    KillRequest,
    NotFound,
    SandboxEvent,
)

from .conftest import Served, destroy_all, leased_by, make_agent, serve

pytestmark = pytest.mark.root


def test_timeout_clamp_defaults_to_sixty() -> None:
    s = AgentSettings(host_id="h", data_dir=Path("/nonexistent"))
    assert [s.clamp_timeout(t) for t in (0, 1, 59, 60, 61, 3600)] == [0, 60, 60, 60, 61, 3600]


async def next_event(events: object, within: float) -> SandboxEvent:
    return await asyncio.wait_for(anext(events), within)  # type: ignore[call-overload]


async def test_metrics_sampled_into_every_range(http: HttpAgentClient, served: Served) -> None:
    info = await http.create(CreateCapsuleRequest(vcpus=1))
    # The burn starts after the first sample, so every CPU-second of it falls between two samples.
    for _ in range(300):
        if (await http.metrics(info.id, "10m")).points:
            break
        await asyncio.sleep(0.1)
    # Burn exactly 1.5 CPU-seconds (however loaded the host is) and hold 32 MiB.
    bg = await http.exec(info.id, ExecRequest(
        cmd="python3", args=["-c", "import time; b = bytearray(32 << 20)\n"
                             "while time.process_time() < 1.5: pass\nopen('/tmp/done', 'w').close(); time.sleep(60)"],
        background=True))
    assert isinstance(bg, BackgroundExecResponse)
    for _ in range(200):
        await asyncio.sleep(0.2)
        done = await http.exec(info.id, ExecRequest(cmd="test", args=["-e", "/tmp/done"]))
        if isinstance(done, ExecResponse) and done.exit_code == 0:
            break
    await asyncio.sleep(1.0)
    m = await http.metrics(info.id, "10m")
    accounted = served.agent.runtime.sample(info.id).cpu_seconds  # the capsule's own (cgroup) CPU time
    assert m.sandbox_id == info.id and m.range == "10m"
    assert len(m.points) >= 4
    assert all(0.0 <= p.cpu_pct <= 100.0 for p in m.points)
    # The samples integrate to the CPU time the capsule used: each percentage is over the interval
    # since the sample before it, whose length a busy host stretches — so integrate over the recorded
    # (sub-second) sample times, not a nominal 0.5 s. Between the first and the last sample the
    # capsule burnt at least the 1.5 s, and at most what its cgroup accounted in all.
    recorded = served.agent.metrics.query(info.id, "10m", time.time())
    assert recorded is not None
    assert [p.cpu_pct for p in m.points] == [round(p.cpu_pct, 2) for p in recorded[:len(m.points)]]
    cpu_seconds = sum(p.cpu_pct / 100 * info.vcpus * (p.timestamp - before.timestamp)
                      for before, p in itertools.pairwise(recorded))
    assert 1.5 * 0.95 <= cpu_seconds <= accounted * 1.05, (cpu_seconds, accounted)
    assert max(p.mem_bytes for p in m.points) > 32 << 20
    now = time.time()
    assert all(now - 600 <= p.timestamp_unix <= now + 1 for p in m.points)
    for range_name in ("5m", "1h", "2h", "6h", "12h", "24h"):
        pts = (await http.metrics(info.id, range_name)).points
        assert pts and pts[-1].mem_bytes > 0, range_name
    # Averaging tiers: timestamps on their bucket boundaries.
    assert all(p.timestamp_unix % 30 == 0 for p in (await http.metrics(info.id, "1h")).points)
    assert all(p.timestamp_unix % 300 == 0 for p in (await http.metrics(info.id, "24h")).points)
    with pytest.raises(BadRequest):
        await http.metrics(info.id, "3d")
    await http.destroy(info.id)
    with pytest.raises(NotFound):
        await http.metrics(info.id, "10m")


async def test_inactivity_auto_pauses_and_reports(http: HttpAgentClient, served: Served) -> None:
    """min_timeout is 1 s in this agent; exec and ping keep it alive, silence pauses it."""
    events = http.events()
    info = await http.create(CreateCapsuleRequest(timeout_sec=2))
    assert info.timeout_sec == 2
    clamped = await http.create(CreateCapsuleRequest(timeout_sec=0))
    assert clamped.timeout_sec == 0
    for _ in range(6):  # 3 s of activity, longer than the TTL
        await asyncio.sleep(0.5)
        await http.ping(info.id) if _ % 2 else await http.exec(info.id, ExecRequest(cmd="true"))
    assert (await http.get(info.id)).status == "running"
    t0 = time.monotonic()
    ev = await next_event(events, 6.0)
    waited = time.monotonic() - t0
    assert (ev.event, ev.sandbox_id, ev.host_id) == ("sandbox.auto_paused", info.id, "host-test")
    assert 1.5 <= waited <= 4.0
    assert (await http.get(info.id)).status == "paused"
    assert (await http.get(clamped.id)).status == "running"  # timeout 0: never
    resumed = await http.resume(info.id)
    assert resumed.status == "running"
    r = await http.exec(info.id, ExecRequest(cmd="echo", args=["back"]))
    assert isinstance(r, ExecResponse) and r.stdout == "back\n"
    await events.aclose()


async def test_process_output_and_traffic_count_as_activity(http: HttpAgentClient) -> None:
    info = await http.create(CreateCapsuleRequest(timeout_sec=2))
    # A process that keeps printing (output seen by a stream attached through the agent).
    await http.exec(info.id, ExecRequest(cmd="/bin/sh", args=["-c", "while true; do echo tick; sleep 0.3; done"],
                                         background=True, tag="ticker"))
    async with http.process_stream(info.id, "ticker") as ch:
        deadline = time.monotonic() + 3.5
        async for msg in ch:
            if time.monotonic() > deadline:
                break
            assert msg["type"] in ("start", "stdout")
    assert (await http.get(info.id)).status == "running"
    await http.guest(info.id, KILL_PROCESS, KillRequest(selector="ticker"))
    # Traffic through the slot: the host keeps talking to a server in the capsule.
    await http.exec(info.id, ExecRequest(cmd="python3", args=["-m", "http.server", "8000"], background=True))
    async with httpx.AsyncClient() as web:
        for _ in range(10):
            await asyncio.sleep(0.35)
            with contextlib.suppress(httpx.HTTPError):
                await web.get(f"http://{info.host_ip}:8000/", timeout=1)
    assert (await http.get(info.id)).status == "running"
    await asyncio.sleep(3.5)
    assert (await http.get(info.id)).status == "paused"


async def test_a_quiet_foreground_command_is_not_paused_under_it(http: HttpAgentClient) -> None:
    info = await http.create(CreateCapsuleRequest(timeout_sec=1))
    r = await http.exec(info.id, ExecRequest(cmd="sleep", args=["3"], timeout_sec=20))
    assert isinstance(r, ExecResponse) and r.exit_code == 0 and r.duration_ms < 6000
    assert (await http.get(info.id)).status == "running"
    await asyncio.sleep(2.5)
    assert (await http.get(info.id)).status == "paused"


async def test_restart_readopts_running_and_reports_the_rest(
        data_dir: Path, minimal_template: TemplateInfo, served: Served) -> None:
    """A second agent on the same data dir takes back live capsules, paused ones stay paused, and a
    capsule whose processes died meanwhile is cleaned up and reported."""
    agent_dir = data_dir.parent / "restart"
    first = make_agent(agent_dir, minimal_template)
    async with serve(first, served.key) as s1:
        c1 = HttpAgentClient(s1.url, s1.key)
        live = await c1.create(CreateCapsuleRequest(timeout_sec=0))
        paused = await c1.create(CreateCapsuleRequest())
        doomed = await c1.create(CreateCapsuleRequest())
        bg = await c1.exec(live.id, ExecRequest(cmd="sleep", args=["300"], background=True, tag="survivor"))
        assert isinstance(bg, BackgroundExecResponse)
        await c1.exec(live.id, ExecRequest(cmd="/bin/sh", args=["-c", "echo persisted > /tmp/p"]))
        await c1.pause(paused.id)
        slots_before = leased_by(first)
        assert len(slots_before) == 3
        await c1.aclose()
    # The agent is gone; its capsules keep running. Kill one of them behind its back.
    await asyncio.to_thread(cgroups.Cgroup(doomed.id).kill_all)

    second = make_agent(agent_dir, minimal_template)
    try:
        events = second.events.subscribe(after=0)
        async with serve(second, served.key) as s2:
            c2 = HttpAgentClient(s2.url, s2.key)
            by_id = {c.id: c for c in await c2.list_capsules()}
            assert set(by_id) == {live.id, paused.id}
            assert by_id[live.id].status == "running" and by_id[paused.id].status == "paused"
            assert (by_id[live.id].host_ip, by_id[live.id].guest_ip) == (live.host_ip, live.guest_ip)
            ev = await next_event(events, 1.0)
            assert (ev.event, ev.sandbox_id) == ("sandbox.stopped", doomed.id) and ev.reason
            r = await c2.exec(live.id, ExecRequest(cmd="cat", args=["/tmp/p"]))
            assert isinstance(r, ExecResponse) and r.stdout == "persisted\n"
            procs = (await c2.guest(live.id, LIST_PROCESSES, Empty())).processes
            assert [p.pid for p in procs if p.tag == "survivor"] == [bg.pid]
            await c2.resume(paused.id)
            r = await c2.exec(paused.id, ExecRequest(cmd="true"))
            assert isinstance(r, ExecResponse) and r.exit_code == 0
            # The dead capsule's slot went back to the pool; the others kept theirs.
            assert leased_by(second) == sorted(set(slots_before) - {doomed_slot(doomed.host_ip)})
            await c2.aclose()
    finally:
        await destroy_all(second)
    assert leased_by(second) == []
    assert [lease for lease in leases.list_leases() if lease.owner == str(agent_dir)] == []  # spares too


def doomed_slot(host_ip: str) -> int:
    from wrenn_platform.host_agent.network.addressing import slot_addresses

    for index in range(1 << 14):
        if slot_addresses(index).slot_ip == host_ip:
            return index
    raise AssertionError(host_ip)


async def test_a_capsule_the_runtime_cannot_remove_is_kept_and_reported(
        http: HttpAgentClient, served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    info = await http.create(CreateCapsuleRequest())
    real_destroy = served.agent.runtime.destroy

    async def broken(capsule_id: str) -> None:
        raise RuntimeError("device busy")

    monkeypatch.setattr(served.agent.runtime, "destroy", broken)
    with pytest.raises(AgentError, match="device busy"):
        await http.destroy(info.id)
    kept = await http.get(info.id)
    assert kept.status == "error"
    assert leased_by(served.agent) == [doomed_slot(info.host_ip)]  # the slot stays with it
    monkeypatch.setattr(served.agent.runtime, "destroy", real_destroy)
    await http.destroy(info.id)
    assert await http.list_capsules() == [] and leased_by(served.agent) == []


async def test_a_capsule_that_dies_is_cleaned_up_and_reported(http: HttpAgentClient, served: Served) -> None:
    events = http.events(after=0)
    victim = await http.create(CreateCapsuleRequest())
    survivor = await http.create(CreateCapsuleRequest())
    await asyncio.to_thread(cgroups.Cgroup(victim.id).kill_all)
    while True:
        ev = await next_event(events, 5.0)
        if ev.sandbox_id == victim.id:
            break
    assert ev.event == "sandbox.stopped" and "on its own" in ev.reason
    assert [c.id for c in await http.list_capsules()] == [survivor.id]
    assert leased_by(served.agent) == [doomed_slot(survivor.host_ip)]
    await events.aclose()
