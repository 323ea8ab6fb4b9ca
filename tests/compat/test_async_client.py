"""The published client's async API (`AsyncCapsule`, `AsyncWrennClient`) through the same flows:
lifecycle, commands, files, terminal, git, snapshots and the event stream."""

from __future__ import annotations

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root


def test_async_lifecycle_commands_and_files(client: PublishedClient) -> None:
    seen = client.run("""
        import asyncio
        from wrenn import AsyncCapsule, AsyncWrennClient

        async def main():
            capsule = await AsyncCapsule.create(template="minimal", wait=True)
            try:
                info = await capsule.get_info()
                listed = [c.id for c in await AsyncCapsule.list()]
                await capsule.ping()
                fg = await capsule.commands.run("echo $X; exit 2", envs={"X": "async"})
                bg = await capsule.commands.run("sleep 0.5; echo bg-done", background=True, tag="async-bg")
                processes = {p.pid: p.tag for p in await capsule.commands.list()}
                joined = [e.type for e in [e async for e in capsule.commands.connect(bg.pid)]]
                streamed = "".join(e.data for e in [e async for e in capsule.commands.stream("echo streamed")]
                                   if e.type == "stdout")
                sleeper = await capsule.commands.run("sleep 300", background=True)
                await capsule.commands.kill(sleeper.pid)
                await capsule.files.write("/tmp/async/a.txt", "async file")
                await capsule.files.make_dir("/tmp/async/dir")
                names = sorted(e.name for e in await capsule.files.list("/tmp/async"))
                exists = await capsule.files.exists("/tmp/async/a.txt")
                text = await capsule.files.read("/tmp/async/a.txt")

                async def chunks():
                    for i in range(8):
                        yield bytes([i]) * (1024 * 1024)

                await capsule.files.upload_stream("/tmp/async/big.bin", chunks())
                size = 0
                async for piece in capsule.files.download_stream("/tmp/async/big.bin"):
                    size += len(piece)
                await capsule.files.remove("/tmp/async")
                gone = await capsule.files.exists("/tmp/async/a.txt")
                paused = await capsule.pause(wait=True)
                connected = await AsyncCapsule.connect(capsule.capsule_id)
                connected_status = (await connected.get_info()).status
                async with AsyncWrennClient() as wrenn:
                    metrics = await wrenn.capsules.metrics(capsule.capsule_id)
            finally:
                await capsule.destroy(wait=True)
            return dict(status=info.status, listed=capsule.capsule_id in listed, fg=(fg.stdout, fg.exit_code),
                        bg_tag=processes.get(bg.pid), joined=joined, streamed=streamed, names=names,
                        exists=exists, text=text, size=size, gone=gone, paused=paused.status,
                        connected_status=connected_status, metrics_id=metrics.sandbox_id == capsule.capsule_id,
                        after=(await AsyncCapsule.get_info(capsule.capsule_id)).status)

        emit(**asyncio.run(main()))
    """, timeout=300)
    assert seen["status"] == "running" and seen["listed"] is True
    assert seen["fg"] == ["async\n", 2]
    assert seen["bg_tag"] == "async-bg"
    assert seen["joined"][-1] == "exit" and "stdout" in seen["joined"]
    assert seen["streamed"] == "streamed\n"
    assert seen["names"] == ["a.txt", "dir"] and seen["exists"] is True and seen["text"] == "async file"
    assert seen["size"] == 8 * 1024 * 1024
    assert seen["gone"] is False
    assert seen["paused"] == "paused" and seen["connected_status"] == "running"
    assert seen["metrics_id"] is True
    assert seen["after"] == "stopped"


def test_async_terminal_git_snapshots_and_events(client: PublishedClient) -> None:
    seen = client.run("""
        import asyncio
        from wrenn import AsyncCapsule, AsyncWrennClient

        async def read_until(term, needle):
            seen = b""
            async for event in term:
                if event.type == "output":
                    assert isinstance(event.data, bytes), event
                    seen += event.data
                    if needle in seen:
                        return seen
                elif event.type in ("exit", "error"):
                    raise AssertionError(f"terminal ended: {event!r} after {seen!r}")
            raise AssertionError(f"closed before {needle!r}: {seen!r}")

        async def main():
            async with AsyncWrennClient() as wrenn:
                stream = wrenn.events.stream()
                connected = (await anext(stream)).event
                capsule = await AsyncCapsule.create(wait=True)
                try:
                    async with capsule.pty(cols=90, rows=20) as term:
                        await term.write(b"stty size\\n")
                        await read_until(term, b"20 90")
                        await term.resize(cols=100, rows=33)
                        await term.write(b"stty size\\n")
                        await read_until(term, b"33 100")
                        tag = term.tag
                        await term.write(b"echo $((100 + 1))-first\\n")
                        await read_until(term, b"101-first")
                        async with capsule.pty_connect(tag) as again:
                            await again.write(b"echo $((2 + 3))-again\\n")
                            await read_until(again, b"5-again")
                            await again.kill()
                            ends = [event.type async for event in again]
                    await capsule.git.configure_user("Async", "async@example.com")
                    await capsule.git.init("/root/arepo")
                    await capsule.files.write("/root/arepo/f.txt", "x")
                    await capsule.git.add(cwd="/root/arepo")
                    await capsule.git.commit("async commit", cwd="/root/arepo")
                    status = await capsule.git.status(cwd="/root/arepo")
                    snap = await capsule.create_snapshot(name="async-snap")
                    names = [t.name for t in await wrenn.snapshots.list(type="snapshot")]
                    child = await AsyncCapsule.create(template="async-snap", wait=True)
                    child_file = await child.files.read("/root/arepo/f.txt")
                    await child.destroy(wait=True)
                    await wrenn.snapshots.delete("async-snap")
                finally:
                    await capsule.destroy(wait=True)
                events = []
                async for event in stream:
                    if event.resource and event.resource.id == capsule.capsule_id:
                        events.append(event.event)
                        if event.event == "capsule.destroy":
                            break
                await stream.aclose()
            return dict(connected=connected, ends=ends, branch=status.branch, clean=status.is_clean,
                        snap=snap.name, names=names, child_file=child_file, events=events)

        emit(**asyncio.run(main()))
    """, timeout=300)
    assert seen["connected"] == "connected"
    assert seen["ends"][-1] == "exit"
    assert seen["branch"] == "main" and seen["clean"] is True
    assert seen["snap"] == "async-snap" and "async-snap" in seen["names"]
    assert seen["child_file"] == "x"
    assert {"capsule.create", "capsule.destroy"} <= set(seen["events"])
