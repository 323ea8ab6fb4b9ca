"""Terminals: escape sequences, input, resize, detach and reattach by tag, kill, idle timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from wrenn_platform.host_agent.envd_client import (
    EnvdClient,
    ProcessEnded,
    ProcessEvent,
    ProcessOutput,
    ProcessStarted,
    PtySize,
)


async def read_until(events: AsyncGenerator[ProcessEvent, None], marker: bytes, within: float = 5.0) -> bytes:
    seen = b""

    async def pump() -> bytes:
        nonlocal seen
        async for event in events:
            if isinstance(event, ProcessOutput):
                assert event.stream == "pty"
                seen += event.data
                if marker in seen:
                    return seen
        raise AssertionError(f"stream ended before {marker!r}: {seen!r}")

    return await asyncio.wait_for(pump(), within)


async def test_pty_defaults_to_bash_and_speaks_terminal(client: EnvdClient) -> None:
    events = client.start("", pty=PtySize(cols=100, rows=30), tag="term-1", envs={"PS1": "$ "})
    started = await anext(events)
    assert isinstance(started, ProcessStarted)
    await client.send_input("term-1", b"tty; stty size; echo $TERM\n", pty=True)
    out = await read_until(events, b"xterm-256color\r\n")
    assert b"/dev/pts/" in out
    assert b"30 100\r\n" in out  # the terminal turns \n into \r\n
    await client.send_input("term-1", b"printf '\\033[31mred\\033[0m\\n'\n", pty=True)
    out = await read_until(events, b"\x1b[31mred\x1b[0m")
    await client.resize_pty("term-1", 120, 40)
    await client.send_input("term-1", b"stty size\n", pty=True)
    await read_until(events, b"40 120\r\n")
    await client.send_input("term-1", b"exit 4\n", pty=True)
    rest = [e async for e in events]
    assert isinstance(rest[-1], ProcessEnded) and rest[-1].exit_code == 4


async def test_pty_session_survives_detach_and_reattaches_by_tag(client: EnvdClient) -> None:
    events = client.start("/bin/bash", ["--norc"], pty=PtySize(80, 24), tag="term-2")
    await anext(events)
    await client.send_input("term-2", b"export SECRET=kept-$((40+2))\n", pty=True)
    await read_until(events, b"export SECRET")
    await events.aclose()  # detach
    await asyncio.sleep(0.2)
    assert "term-2" in {p.tag for p in await client.list_processes()}
    again = client.connect("term-2")
    await client.send_input("term-2", b"echo $SECRET\n", pty=True)
    out = await read_until(again, b"kept-42\r\n")
    assert b"export SECRET" in out  # the earlier output is replayed first
    await client.send_signal("term-2", "SIGKILL")
    rest = [e async for e in again]
    assert isinstance(rest[-1], ProcessEnded) and rest[-1].status == "signal: killed"


async def test_ctrl_c_reaches_the_foreground_program(client: EnvdClient) -> None:
    events = client.start("/bin/bash", ["--norc"], pty=PtySize(80, 24), tag="term-3")
    await anext(events)
    await client.send_input("term-3", b"sleep 30\n", pty=True)
    await asyncio.sleep(0.3)
    await client.send_input("term-3", b"\x03", pty=True)
    await read_until(events, b"^C")
    await client.send_input("term-3", b"echo after-$?\n", pty=True)
    await read_until(events, b"after-130")
    await client.send_signal("term-3", "SIGKILL")
    await events.aclose()


async def test_idle_detached_pty_times_out(client: EnvdClient) -> None:
    # The session envd runs with --pty-idle-timeout 1.5.
    events = client.start("/bin/bash", ["--norc"], pty=PtySize(80, 24), tag="term-idle")
    started = await anext(events)
    await events.aclose()
    assert "term-idle" in {p.tag for p in await client.list_processes()}
    for _ in range(50):
        await asyncio.sleep(0.1)
        if "term-idle" not in {p.tag for p in await client.list_processes()}:
            break
    else:
        raise AssertionError("idle terminal was not killed")
    assert isinstance(started, ProcessStarted)


async def test_attached_pty_is_not_idle(client: EnvdClient) -> None:
    events = client.start("/bin/bash", ["--norc"], pty=PtySize(80, 24), tag="term-busy")
    await anext(events)
    await asyncio.sleep(2.5)
    assert "term-busy" in {p.tag for p in await client.list_processes()}
    await client.send_signal("term-busy", "SIGKILL")
    await events.aclose()
