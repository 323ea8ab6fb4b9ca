"""Processes: foreground, background, streaming, stdin, signals, list, reconnect, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wrenn_platform.host_agent.envd_client import (
    EnvdClient,
    EnvdError,
    ProcessEnded,
    ProcessEvent,
    ProcessOutput,
    ProcessStarted,
    PtySize,
)

from . import rpc
from .conftest import EnvdProcess


async def collect(events: object) -> list[ProcessEvent]:
    out: list[ProcessEvent] = []
    async for event in events:  # type: ignore[attr-defined]
        out.append(event)
    return out


def output(events: list[ProcessEvent], stream: str = "stdout") -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ProcessOutput) and e.stream == stream)


async def test_foreground_exit_code_and_separate_streams(client: EnvdClient) -> None:
    result = await client.run("sh", ["-c", "echo out; echo err >&2; exit 3"])
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    assert (result.exit_code, result.exited, result.status) == (3, True, "exit status 3")
    assert result.pid > 0


async def test_events_arrive_as_they_are_produced(client: EnvdClient) -> None:
    stamps: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    async for event in client.start("sh", ["-c", "echo a; sleep 0.4; echo b"]):
        if isinstance(event, ProcessOutput):
            stamps.append((time.monotonic() - t0, event.data))
    assert [d for _, d in stamps] == [b"a\n", b"b\n"]
    assert stamps[0][0] < 0.3 <= stamps[1][0]


async def test_binary_output_is_preserved(client: EnvdClient, workdir: Path) -> None:
    blob = bytes(range(256)) * 1000 + b"\x00\xff\r\n\x1b[0m"
    (workdir / "blob").write_bytes(blob)
    result = await client.run("cat", [str(workdir / "blob")])
    assert result.stdout == blob


async def test_large_stdout_streams_intact(client: EnvdClient) -> None:
    size = 64 * 1024 * 1024
    digest = hashlib.sha256()
    total = 0
    stderr = b""
    script = f"head -c {size} /dev/urandom | tee >(sha256sum >&2)"
    async for event in client.start("bash", ["-c", script]):
        if isinstance(event, ProcessOutput) and event.stream == "stdout":
            digest.update(event.data)
            total += len(event.data)
        elif isinstance(event, ProcessOutput):
            stderr += event.data
    assert total == size
    assert stderr.split()[0].decode() == digest.hexdigest()


async def test_envs_cwd_and_user(client: EnvdClient, workdir: Path) -> None:
    result = await client.run(
        "sh", ["-c", 'echo "$FOO|$(pwd)|$(id -u)|$(id -g)|$HOME|$USER"'], envs={"FOO": "bar baz"},
        cwd=str(workdir), user="nobody",
    )
    assert result.exit_code == 0, result.stderr
    foo, cwd, uid, gid, home, user = result.stdout.decode().strip().split("|")
    assert (foo, cwd, uid, gid, user) == ("bar baz", str(workdir), "65534", "65534", "nobody")
    assert home == "/nonexistent"
    root = await client.run("id", ["-u"])
    assert root.stdout == b"0\n"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


async def test_another_users_process_has_only_that_users_ids_groups_and_no_capabilities(
    client: EnvdClient, envd: EnvdProcess
) -> None:
    """Started from that user's own thread (so vfork can be used): every id, the supplementary
    groups and the capabilities are the user's, in pipes and in a terminal, and envd stays root."""
    plain = await client.run("cat", ["/proc/self/status"], user="nobody")
    events = client.start("cat", ["/proc/self/status"], user="nobody", pty=PtySize(cols=80, rows=24))
    terminal = b"".join(getattr(e, "data", b"") for e in await collect(events)).replace(b"\r\n", b"\n")
    for text in (plain.stdout.decode(), terminal.decode()):
        status = _status(text)
        assert status["Uid"].split() == ["65534"] * 4
        assert status["Gid"].split() == ["65534"] * 4
        assert status["Groups"].split() == ["65534"]
        assert int(status["CapPrm"], 16) == int(status["CapEff"], 16) == 0
    assert _status(_read(f"/proc/{envd.pid}/status"))["Uid"].split() == ["0"] * 4
    root = _status((await client.run("cat", ["/proc/self/status"])).stdout.decode())
    assert root["Uid"].split() == ["0"] * 4 and int(root["CapEff"], 16) != 0


async def test_stdin_send_and_close(client: EnvdClient) -> None:
    events = client.start("cat", stdin=True)
    first = await anext(events)
    assert isinstance(first, ProcessStarted)
    await client.send_input(first.pid, b"hello \x00\xff\n")
    await client.send_input(first.pid, b"world\n")
    await rpc.close_stdin(client, first.pid)
    rest = await collect(events)
    assert output(rest) == b"hello \x00\xff\nworld\n"
    end = rest[-1]
    assert isinstance(end, ProcessEnded) and end.exit_code == 0


async def test_stream_input(client: EnvdClient) -> None:
    info = await client.start_background("sha256sum", stdin=True, tag="hasher")
    chunks = [bytes([i]) * 100_000 for i in range(20)]

    async def gen() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    await rpc.stream_input(client, "hasher", gen())
    await rpc.close_stdin(client, info.pid)
    events = await collect(client.connect("hasher"))
    assert output(events).split()[0].decode() == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_background_tag_list_and_kill(client: EnvdClient) -> None:
    events = client.start("sleep", ["30"])  # no tag: envd picks one
    started = await anext(events)
    await events.aclose()
    assert isinstance(started, ProcessStarted)
    named = await client.start_background("sleep", ["31"], tag="web-server")
    listed = {p.pid: p for p in await client.list_processes()}
    auto = listed[started.pid]
    assert re.fullmatch(r"proc-[0-9a-f]{8}", auto.tag)
    quick = await client.start_background("true")  # exits at once: the client chose its tag
    assert re.fullmatch(r"proc-[0-9a-f]{8}", quick.tag) and quick.pid > 0
    assert (listed[named.pid].tag, listed[named.pid].cmd, listed[named.pid].args) == (
        "web-server", "sleep", ["31"]
    )
    with pytest.raises(EnvdError) as exc:
        await client.start_background("sleep", ["1"], tag="web-server")
    assert exc.value.code == "already_exists"
    await client.send_signal("web-server", "SIGTERM")
    await client.send_signal(auto.pid, "SIGKILL")
    ends = [e for e in await collect(client.connect(named.pid)) if isinstance(e, ProcessEnded)]
    assert ends[0].status == "signal: terminated" and not ends[0].exited
    ends = [e for e in await collect(client.connect(auto.pid)) if isinstance(e, ProcessEnded)]
    assert ends[0].status == "signal: killed" and ends[0].exit_code == -1
    pids = {p.pid for p in await client.list_processes()}
    assert auto.pid not in pids and named.pid not in pids


async def test_process_outlives_connection_and_reconnect_replays(client: EnvdClient) -> None:
    script = "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo done >&2; exit 7"
    events = client.start("sh", ["-c", script], tag="ticker")
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event, ProcessOutput):
            break
    await events.aclose()  # the client goes away after the first line
    assert output(seen) == b"line1\n"
    assert "ticker" in {p.tag for p in await client.list_processes()}
    again = await collect(client.connect("ticker"))
    assert isinstance(again[0], ProcessStarted)
    assert output(again) == b"line1\nline2\nline3\n"  # everything since start, then live
    assert output(again, "stderr") == b"done\n"
    assert isinstance(again[-1], ProcessEnded) and again[-1].exit_code == 7


async def test_reconnect_by_pid_keeps_a_bounded_tail(client: EnvdClient, workdir: Path) -> None:
    # The session envd keeps 1 MiB per process; nobody reads while 3 MiB are written.
    done = workdir / "written"
    script = f"head -c 3145728 /dev/zero | tr '\\0' a; echo; echo tail-marker; touch {done}; sleep 1"
    info = await client.start_background("sh", ["-c", script])
    for _ in range(100):
        if done.exists():
            break
        await asyncio.sleep(0.05)
    events = await collect(client.connect(str(info.pid)))
    data = output(events)
    assert data.endswith(b"a\ntail-marker\n")
    assert data.startswith(b"aaaa")
    assert 1000 * 1024 < len(data) <= 1024 * 1024  # the newest 1 MiB


async def test_foreground_timeout_kills(client: EnvdClient) -> None:
    t0 = time.monotonic()
    result = await client.run("/bin/sh", ["-c", "echo started; sleep 30"], timeout=0.5, tag="slow")
    assert result.timed_out and not result.exited
    assert result.stdout == b"started\n"  # what it wrote until then
    assert time.monotonic() - t0 < 15  # cut at its 0.5 s timeout, well before the 30 s it wanted
    assert "slow" not in {p.tag for p in await client.list_processes()}


async def test_signal_reaches_the_whole_process_group(client: EnvdClient) -> None:
    info = await client.start_background("sh", ["-c", "sleep 30 & sleep 30 & wait"])
    await asyncio.sleep(0.2)
    await client.send_signal(info.pid, "SIGKILL")
    await collect(client.connect(info.pid))
    children = await client.run("sh", ["-c", f"pgrep -g {info.pid} || true"])
    assert children.stdout == b""


async def test_grandchild_holding_stdout_does_not_hang(client: EnvdClient) -> None:
    t0 = time.monotonic()
    result = await client.run("sh", ["-c", "sleep 20 & echo started"])
    assert result.stdout == b"started\n" and result.exit_code == 0
    assert time.monotonic() - t0 < 10  # did not wait for the grandchild's 20 s
