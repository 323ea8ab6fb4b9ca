"""A capsule's whole life through the agent's client — over HTTP and in-process alike — with real
namespace capsules: create, exec, files, processes, streams, PTY, pause/resume, destroy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wrenn_platform.agent_link.client import AgentClient, Channel
from wrenn_platform.wire.agent import (
    KILL_PROCESS,
    LIST_DIR,
    LIST_PROCESSES,
    MAKE_DIR,
    REMOVE,
    AlreadyExists,
    BackgroundExecResponse,
    BadRequest,
    Conflict,
    CreateCapsuleRequest,
    Empty,
    ExecRequest,
    ExecResponse,
    GuestOp,
    KillRequest,
    ListDirRequest,
    MakeDirRequest,
    NotFound,
    RemoveRequest,
    ResourceExhausted,
    SnapshotRequest,
)

from .conftest import Served, exist, leased_by

pytestmark = pytest.mark.root


async def run(client: AgentClient, capsule_id: str, cmd: str, *args: str, **kw: object) -> ExecResponse:
    r = await client.exec(capsule_id, ExecRequest(cmd=cmd, args=list(args), **kw))
    assert isinstance(r, ExecResponse)
    return r


async def sh(client: AgentClient, capsule_id: str, script: str) -> ExecResponse:
    return await run(client, capsule_id, "/bin/sh", "-c", script)


async def messages_until(ch: Channel, stop: str, limit: float = 10.0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []

    async def collect() -> None:
        async for msg in ch:
            out.append(msg)
            if msg.get("type") == stop:
                return

    await asyncio.wait_for(collect(), limit)
    return out


@pytest.fixture
async def capsule(client: AgentClient) -> AsyncIterator[str]:
    info = await client.create(CreateCapsuleRequest(template="minimal", metadata={"purpose": "test"}))
    yield info.id
    with contextlib.suppress(NotFound):
        await client.destroy(info.id)


async def test_create_reports_a_running_capsule(client: AgentClient, capsule: str, served: Served) -> None:
    info = await client.get(capsule)
    assert info.status == "running"
    assert info.runtime == "namespace"
    assert info.host_ip.startswith("10.11.") and info.guest_ip == info.host_ip
    assert info.metadata["purpose"] == "test"
    assert info.metadata["runtime"] == "namespace" and info.metadata["envd_version"]
    assert [c.id for c in await client.list_capsules()] == [capsule]
    assert (await client.info()).capsules == 1


async def test_exec_foreground(client: AgentClient, capsule: str) -> None:
    r = await run(client, capsule, "echo", "hi")
    assert (r.stdout, r.stderr, r.exit_code, r.encoding, r.sandbox_id) == ("hi\n", "", 0, "utf-8", capsule)
    r = await sh(client, capsule, "echo oops >&2; exit 3")
    assert (r.stderr, r.exit_code) == ("oops\n", 3)
    r = await sh(client, capsule, "printf '\\377\\000ok'")
    assert r.encoding == "base64" and base64.b64decode(r.stdout) == b"\xff\x00ok"
    r = await run(client, capsule, "/bin/sh", "-c", "echo started; sleep 30", timeout_sec=1)
    assert r.timed_out and r.stdout == "started\n" and 900 <= r.duration_ms < 10_000
    r = await run(client, capsule, "/bin/sh", "-c", 'echo "$FOO $(pwd)"', envs={"FOO": "bar"}, cwd="/tmp")
    assert r.stdout == "bar /tmp\n"
    r = await run(client, capsule, "/no/such/binary")
    assert r.exit_code == 127 and "/no/such/binary" in r.stderr


async def test_files_streamed_both_ways(client: AgentClient, capsule: str) -> None:
    size = 8 * 1024 * 1024 + 123
    blob = os.urandom(64 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            part = blob[: min(len(blob), size - sent)]
            sent += len(part)
            yield part

    await client.write_file(capsule, "/tmp/up/big.bin", chunks())
    r = await sh(client, capsule, "wc -c < /tmp/up/big.bin")
    assert int(r.stdout) == size
    received, n_chunks = bytearray(), 0
    async with client.read_file(capsule, "/tmp/up/big.bin") as stream:
        async for part in stream:
            received.extend(part)
            n_chunks += 1
    assert len(received) == size and n_chunks > 1
    assert received[: len(blob)] == blob and received[-123:] == blob[:123]

    entry = (await client.guest(capsule, MAKE_DIR, MakeDirRequest(path="/tmp/up/sub"))).entry
    assert entry.type == "directory" and entry.path == "/tmp/up/sub"
    with pytest.raises(AlreadyExists):
        await client.guest(capsule, MAKE_DIR, MakeDirRequest(path="/tmp/up/sub"))
    names = {e.name: e for e in (await client.guest(capsule, LIST_DIR, ListDirRequest(path="/tmp/up"))).entries}
    assert names["big.bin"].size == size and names["big.bin"].type == "file"
    assert names["sub"].type == "directory"
    await client.guest(capsule, REMOVE, RemoveRequest(path="/tmp/up/big.bin"))
    with pytest.raises(NotFound):
        async with client.read_file(capsule, "/tmp/up/big.bin") as stream:
            async for _ in stream:
                pass
    with pytest.raises(NotFound):
        await client.guest(capsule, LIST_DIR, ListDirRequest(path="/does/not/exist"))


async def test_background_processes(client: AgentClient, capsule: str) -> None:
    bg = await client.exec(capsule, ExecRequest(
        cmd="/bin/sh", args=["-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; sleep 60"],
        background=True, tag="ticker"))
    assert isinstance(bg, BackgroundExecResponse) and bg.tag == "ticker" and bg.pid > 0
    auto = await client.exec(capsule, ExecRequest(cmd="sleep", args=["60"], background=True))
    assert isinstance(auto, BackgroundExecResponse) and auto.tag.startswith("proc-") and len(auto.tag) == 13

    procs = {p.tag: p for p in (await client.guest(capsule, LIST_PROCESSES, Empty())).processes}
    assert procs["ticker"].pid == bg.pid and procs["ticker"].cmd == "/bin/sh"
    assert auto.tag in procs

    # Reconnect to its output by tag: what it printed so far, then live.
    async with client.process_stream(capsule, "ticker") as ch:
        seen = ""

        async def read_three() -> None:
            nonlocal seen
            async for msg in ch:
                if msg["type"] == "start":
                    assert msg["pid"] == bg.pid
                if msg["type"] == "stdout":
                    seen += str(msg["data"])
                if "line3" in seen:
                    return

        await asyncio.wait_for(read_three(), 10)
    assert seen.startswith("line1\nline2\nline3")

    # Kill by tag (SIGTERM) and by pid (default SIGKILL); a stream sees the exit.
    async with client.process_stream(capsule, str(auto.pid)) as ch:
        await client.guest(capsule, KILL_PROCESS, KillRequest(selector=str(auto.pid)))
        msgs = await messages_until(ch, "exit")
        assert msgs[-1]["type"] == "exit"
    await client.guest(capsule, KILL_PROCESS, KillRequest(selector="ticker", signal="SIGTERM"))
    for _ in range(50):
        if not (await client.guest(capsule, LIST_PROCESSES, Empty())).processes:
            break
        await asyncio.sleep(0.05)
    assert (await client.guest(capsule, LIST_PROCESSES, Empty())).processes == []
    with pytest.raises(NotFound):
        await client.guest(capsule, KILL_PROCESS, KillRequest(selector="no-such-tag"))
    with pytest.raises(BadRequest):
        await client.guest(capsule, KILL_PROCESS, KillRequest.model_construct(selector="1", signal="SIGHUP"))
    with pytest.raises(NotFound):
        await client.guest(capsule, GuestOp("no_such_operation", Empty, Empty, "do nothing in"), Empty())


async def test_exec_stream(client: AgentClient, capsule: str) -> None:
    async with client.exec_stream(capsule) as ch:
        await ch.send({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo out; echo err >&2; exit 5"]})
        msgs = await messages_until(ch, "exit")
    assert msgs[0]["type"] == "start" and int(msgs[0]["pid"]) > 0  # type: ignore[call-overload]
    assert {"type": "stdout", "data": "out\n"} in msgs and {"type": "stderr", "data": "err\n"} in msgs
    assert msgs[-1] == {"type": "exit", "exit_code": 5}

    async with client.exec_stream(capsule) as ch:
        await ch.send({"type": "start", "cmd": "sleep", "args": ["60"]})
        first = await messages_until(ch, "start")
        await ch.send({"type": "stop"})
        end = await messages_until(ch, "exit")
    assert first[0]["type"] == "start" and end[-1]["type"] == "exit" and end[-1]["exit_code"] != 0

    async with client.exec_stream(capsule) as ch:
        await ch.send({"type": "bogus"})
        msgs = await messages_until(ch, "error")
    assert msgs[-1]["fatal"] is True


async def test_pty_interactive_resize_and_reconnect(client: AgentClient, capsule: str) -> None:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    async def output_until(ch: Channel, needle: str) -> str:
        text = ""

        async def go() -> None:
            nonlocal text
            async for msg in ch:
                if msg["type"] == "output":
                    text += base64.b64decode(str(msg["data"])).decode(errors="replace")
                    if needle in text:
                        return

        await asyncio.wait_for(go(), 10)
        return text

    async with client.pty(capsule) as ch:
        await ch.send({"type": "start", "cmd": "/bin/sh", "cols": 100, "rows": 30})
        started = await messages_until(ch, "started")
        tag, pid = started[-1]["tag"], started[-1]["pid"]
        assert str(tag).startswith("pty-") and int(pid) > 0  # type: ignore[call-overload]
        await ch.send({"type": "input", "data": b64("stty size; echo $((6*7))x\n")})
        text = await output_until(ch, "42x")
        assert "30 100" in text
        await ch.send({"type": "resize", "cols": 120, "rows": 40})
        await ch.send({"type": "input", "data": b64("stty size\n")})
        assert "40 120" in await output_until(ch, "40 120")
    # The session outlives the connection: reconnect by tag and keep typing.
    async with client.pty(capsule) as ch:
        await ch.send({"type": "connect", "tag": tag})
        again = await messages_until(ch, "started")
        assert again[-1]["tag"] == tag and again[-1]["pid"] == pid
        await ch.send({"type": "input", "data": b64("echo back-$((1+1))\n")})
        await output_until(ch, "back-2")
        await ch.send({"type": "input", "data": b64("exit 7\n")})
        msgs = await messages_until(ch, "exit")
        assert msgs[-1] == {"type": "exit", "exit_code": 7}
    async with client.pty(capsule) as ch:
        await ch.send({"type": "connect", "tag": "pty-nothere"})
        msgs = await messages_until(ch, "error")
        assert msgs[-1]["fatal"] is True


async def test_pause_resume_keeps_ips_processes_and_files(client: AgentClient, capsule: str) -> None:
    before = await client.get(capsule)
    await sh(client, capsule, "echo kept > /tmp/f")
    bg = await client.exec(capsule, ExecRequest(cmd="sleep", args=["300"], background=True, tag="sleeper"))
    assert isinstance(bg, BackgroundExecResponse)

    paused = await client.pause(capsule)
    assert paused.status == "paused"
    with pytest.raises(Conflict):
        await run(client, capsule, "true")
    with pytest.raises(Conflict):
        await client.ping(capsule)
    with pytest.raises(Conflict):
        await client.pause(capsule)

    resumed = await client.resume(capsule)
    assert resumed.status == "running"
    assert (resumed.host_ip, resumed.guest_ip) == (before.host_ip, before.guest_ip)
    assert (await sh(client, capsule, "cat /tmp/f")).stdout == "kept\n"
    processes = (await client.guest(capsule, LIST_PROCESSES, Empty())).processes
    assert [p.pid for p in processes if p.tag == "sleeper"] == [bg.pid]
    with pytest.raises(Conflict):
        await client.resume(capsule)
    await client.ping(capsule)


async def test_destroy_releases_everything(client: AgentClient, served: Served) -> None:
    info = await client.create(CreateCapsuleRequest(capsule_id="c" * 63))  # the longest id there is
    rec_path = served.agent.records.path(info.id)
    rec = served.agent._get(info.id)
    state_dir, netns = Path(rec.state_dir or ""), Path("/run/netns", (rec.slot or {})["netns"])
    assert exist(rec_path, state_dir, netns) == [True, True, True]
    await client.destroy(info.id)
    with pytest.raises(NotFound):
        await client.get(info.id)
    with pytest.raises(NotFound):
        await client.destroy(info.id)
    assert exist(rec_path, state_dir, netns) == [False, False, False]
    assert leased_by(served.agent) == []


async def test_failed_create_leaves_nothing(client: AgentClient, served: Served) -> None:
    with pytest.raises(NotFound):
        await client.create(CreateCapsuleRequest(template="no-such-template"))
    with pytest.raises(BadRequest):
        await client.create(CreateCapsuleRequest(template="Bad Name!"))
    # One id rule (the capsule's hostname): 64 characters is refused before anything is made.
    with pytest.raises(BadRequest, match="1-63"):
        await client.create(CreateCapsuleRequest(capsule_id="c" * 64))
    with pytest.raises(BadRequest):
        await client.create(CreateCapsuleRequest(capsule_id="-starts-with-a-dash"))
    # The runtime fails midway (no room for the capsule's disk): slot and records are released.
    with pytest.raises(Exception) as err:
        await client.create(CreateCapsuleRequest(disk_size_mb=10**9))
    assert "create failed" in str(err.value)
    assert await client.list_capsules() == []
    assert list(served.agent.records.root.glob("*.json")) == []
    assert leased_by(served.agent) == []


async def test_unknown_capsule_is_404(client: AgentClient) -> None:
    for call in (client.get("cl-nope"), client.pause("cl-nope"), client.ping("cl-nope"),
                 client.exec("cl-nope", ExecRequest(cmd="true"))):
        with pytest.raises(NotFound):
            await call
    async with client.exec_stream("cl-nope") as ch:
        await ch.send({"type": "start", "cmd": "true"})
        msgs = await messages_until(ch, "error")
    assert msgs[-1]["code"] == "not_found" and msgs[-1]["fatal"] is True
    async with client.process_stream("cl-nope", "1") as ch:
        msgs = await messages_until(ch, "error")
    assert msgs[-1]["code"] == "not_found"


async def test_snapshot_becomes_a_template(client: AgentClient, capsule: str) -> None:
    await sh(client, capsule, "mkdir -p /home/user/app && echo from-snapshot > /home/user/app/v")
    tpl = await client.snapshot(capsule, SnapshotRequest(team_id="team-a", name="with-app"))
    assert (tpl.name, tpl.type, tpl.platform) == ("with-app", "snapshot", False) and tpl.size_bytes > 0
    assert (await client.get(capsule)).status == "running"  # the source keeps running
    assert (await sh(client, capsule, "echo still")).stdout == "still\n"
    with pytest.raises(AlreadyExists):
        await client.snapshot(capsule, SnapshotRequest(team_id="team-a", name="with-app"))
    assert "with-app" in [t.name for t in await client.list_templates("team-a")]
    assert "with-app" not in [t.name for t in await client.list_templates("team-b")]

    clone = await client.create(CreateCapsuleRequest(team_id="team-a", template="with-app"))
    try:
        assert (await sh(client, clone.id, "cat /home/user/app/v")).stdout == "from-snapshot\n"
        with pytest.raises(NotFound):  # another team does not see it
            await client.create(CreateCapsuleRequest(team_id="team-b", template="with-app"))
        with pytest.raises(Conflict):  # a capsule runs on it
            await client.delete_template("team-a", "with-app")
    finally:
        await client.destroy(clone.id)
    await client.delete_template("team-a", "with-app")
    assert "with-app" not in [t.name for t in await client.list_templates("team-a")]
    with pytest.raises(NotFound):
        await client.delete_template("team-a", "with-app")


async def test_concurrent_capsules(client: AgentClient, served: Served) -> None:
    async def one(i: int) -> str:
        info = await client.create(CreateCapsuleRequest(metadata={"n": str(i)}))
        r = await sh(client, info.id, f"echo {i} > /tmp/n; cat /tmp/n; hostname")
        assert r.stdout == f"{i}\n{info.id}\n"
        return info.host_ip

    ips = await asyncio.gather(*(one(i) for i in range(5)))
    assert len(set(ips)) == 5  # a slot each
    infos = await client.list_capsules()
    assert sorted(c.metadata["n"] for c in infos) == ["0", "1", "2", "3", "4"]
    await asyncio.gather(*(client.destroy(c.id) for c in infos))
    assert await client.list_capsules() == [] and leased_by(served.agent) == []


async def test_upload_beyond_the_disk_is_413(client: AgentClient) -> None:
    info = await client.create(CreateCapsuleRequest(disk_size_mb=64))
    try:
        async def zeros() -> AsyncIterator[bytes]:
            chunk = bytes(1 << 20)
            for _ in range(128):
                yield chunk

        with pytest.raises(ResourceExhausted):
            await client.write_file(info.id, "/home/user/big", zeros())
        r = await sh(client, info.id, "echo still-usable")
        assert r.stdout == "still-usable\n"
    finally:
        await client.destroy(info.id)
