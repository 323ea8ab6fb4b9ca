"""Files: streamed read/write, atomic writes, listing with every FileEntry field, mkdir, remove,
stat, move, and the permissions of the user a call acts as."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError

from . import rpc
from .conftest import TOKEN, EnvdProcess


async def test_write_creates_parents_and_reads_back_binary(client: EnvdClient, workdir: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)
    target = workdir / "a" / "b" / "c.bin"
    written = await client.write_file(str(target), blob)
    assert written == str(target)
    assert target.read_bytes() == blob
    assert await rpc.read_file(client, str(target)) == blob
    assert await rpc.read_file(client, str(workdir / "a" / "b" / "c.bin")) == blob
    empty = await client.write_file(str(workdir / "empty"), b"")
    assert await rpc.read_file(client, empty) == b""


async def test_streamed_upload_and_download(client: EnvdClient, workdir: Path) -> None:
    chunk = os.urandom(1024 * 1024)
    count = 48
    sent = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(count):
            piece = chunk[i:] + chunk[:i]
            sent.update(piece)
            yield piece

    path = str(workdir / "big.bin")
    await client.write_file(path, chunks())
    got = hashlib.sha256()
    size = 0
    async for piece in client.download(path):
        got.update(piece)
        size += len(piece)
    assert size == count * len(chunk)
    assert got.hexdigest() == sent.hexdigest()


async def test_write_is_atomic_and_keeps_the_mode(client: EnvdClient, workdir: Path) -> None:
    target = workdir / "script.sh"
    target.write_bytes(b"old")
    os.chmod(target, 0o750)
    inode = target.stat().st_ino
    await client.write_file(str(target), b"#!/bin/sh\necho new\n")
    assert target.read_bytes() == b"#!/bin/sh\necho new\n"
    assert target.stat().st_ino != inode  # replaced by rename, never truncated in place
    assert target.stat().st_mode & 0o7777 == 0o750
    assert sorted(os.listdir(workdir)) == ["script.sh"]  # no temporary file left


async def test_list_dir_depth_and_every_file_entry_field(client: EnvdClient, workdir: Path) -> None:
    (workdir / "dir" / "sub").mkdir(parents=True)
    (workdir / "dir" / "sub" / "deep.txt").write_text("deep")
    (workdir / "file.txt").write_text("hello")
    os.chmod(workdir / "file.txt", 0o640)
    os.symlink("file.txt", workdir / "link")
    os.utime(workdir / "file.txt", (1_700_000_000, 1_700_000_000))

    top = {e.name: e for e in await client.list_dir(str(workdir))}
    assert sorted(top) == ["dir", "file.txt", "link"]
    f = top["file.txt"]
    assert (f.path, f.type, f.size, f.mode, f.permissions) == (
        str(workdir / "file.txt"), "file", 5, 0o640, "-rw-r-----"
    )
    assert (f.owner, f.group, int(f.modified_at), f.symlink_target) == ("root", "root", 1_700_000_000, None)
    assert top["dir"].type == "directory" and top["dir"].permissions.startswith("d")
    assert top["link"].type == "symlink" and top["link"].symlink_target == "file.txt"
    entry = f.model_dump()
    assert set(entry) == {
        "name", "path", "type", "size", "mode", "permissions", "owner", "group", "modified_at",
        "symlink_target",
    }

    deep = {e.path for e in await client.list_dir(str(workdir), depth=3)}
    assert str(workdir / "dir" / "sub" / "deep.txt") in deep
    two = {e.path for e in await client.list_dir(str(workdir), depth=2)}
    assert str(workdir / "dir" / "sub") in two and str(workdir / "dir" / "sub" / "deep.txt") not in two


async def test_mkdir_stat_move_remove(client: EnvdClient, workdir: Path) -> None:
    made = await client.make_dir(str(workdir / "x" / "y"))
    assert made.type == "directory" and (workdir / "x" / "y").is_dir()
    with pytest.raises(EnvdError) as exc:
        await client.make_dir(str(workdir / "x" / "y"))
    assert exc.value.code == "already_exists"
    await client.write_file(str(workdir / "x" / "y" / "f"), b"data")
    stat = await rpc.stat(client, str(workdir / "x" / "y" / "f"))
    assert stat.size == 4 and stat.type == "file"
    moved = await rpc.move(client, str(workdir / "x"), str(workdir / "z" / "x2"))
    assert moved.path == str(workdir / "z" / "x2")
    assert (workdir / "z" / "x2" / "y" / "f").read_bytes() == b"data"
    await client.remove(str(workdir / "z"))
    assert not (workdir / "z").exists()
    for call in (rpc.stat(client, str(workdir / "z")), client.remove(str(workdir / "z")),
                 rpc.read_file(client, str(workdir / "nope")), client.list_dir(str(workdir / "nope"))):
        with pytest.raises(EnvdError) as exc:
            await call
        assert exc.value.code == "not_found"


async def test_relative_paths_are_taken_from_the_users_home(client: EnvdClient) -> None:
    name = f"envd-test-{time.time_ns()}.txt"
    home_file = Path("/root") / name
    try:
        await client.write_file(name, b"home")
        assert home_file.read_bytes() == b"home"
        assert (await rpc.stat(client, f"~/{name}")).path == str(home_file)
    finally:
        os.unlink(home_file)


async def test_unprivileged_user_gets_permission_denied(client: EnvdClient, workdir: Path) -> None:
    secret = workdir / "secret"
    secret.write_bytes(b"root only")
    os.chmod(secret, 0o600)
    private = workdir / "private"
    private.mkdir(mode=0o700)
    cases = [
        rpc.read_file(client, str(secret), user="nobody"),
        client.write_file(str(workdir / "new"), b"x", user="nobody"),  # workdir is 0755 root
        client.list_dir(str(private), user="nobody"),
        client.make_dir(str(workdir / "d"), user="nobody"),
        client.remove(str(secret), user="nobody"),
        rpc.move(client, str(secret), str(workdir / "moved"), user="nobody"),
        rpc.stat(client, str(private / "x"), user="nobody"),
    ]
    for call in cases:
        with pytest.raises(EnvdError) as exc:
            await call
        assert exc.value.code == "permission_denied", exc.value
    assert secret.read_bytes() == b"root only" and not (workdir / "new").exists()
    # Where nobody may write, files are created as nobody.
    shared = workdir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    await client.write_file(str(shared / "mine" / "f.txt"), b"ok", user="nobody")
    entry = await rpc.stat(client, str(shared / "mine" / "f.txt"), user="nobody")
    assert (entry.owner, entry.group) == ("nobody", "nogroup")
    assert (shared / "mine").stat().st_uid == 65534
    # The root thread pool is unaffected by the unprivileged one.
    assert await rpc.read_file(client, str(secret)) == b"root only"


async def test_bad_paths_and_directories(client: EnvdClient, workdir: Path) -> None:
    (workdir / "d").mkdir()
    (workdir / "f").write_text("f")
    cases = [
        (rpc.read_file(client, str(workdir / "d")), "invalid_argument"),
        (client.write_file(str(workdir / "d"), b"x"), "invalid_argument"),
        (client.write_file(str(workdir / "f" / "under-a-file"), b"x"), "already_exists"),
        (client.list_dir(str(workdir / "f")), "invalid_argument"),
        (rpc.stat(client, ""), "invalid_argument"),
        (rpc.stat(client, str(workdir), user="no-such-user"), "invalid_argument"),
    ]
    for call, code in cases:
        with pytest.raises(EnvdError) as exc:
            await call
        assert exc.value.code == code, exc.value


async def test_move_across_filesystems(client: EnvdClient, workdir: Path, small_disk: Path) -> None:
    tree = workdir / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_bytes(b"payload")
    os.chmod(tree / "sub" / "f.txt", 0o600)
    os.symlink("sub/f.txt", tree / "link")
    moved = await rpc.move(client, str(tree), str(small_disk / "tree"))
    assert moved.type == "directory" and not tree.exists()
    assert (small_disk / "tree" / "sub" / "f.txt").read_bytes() == b"payload"
    assert (small_disk / "tree" / "sub" / "f.txt").stat().st_mode & 0o777 == 0o600
    assert os.readlink(small_disk / "tree" / "link") == "sub/f.txt"


async def test_watch_dir_reports_changes(client: EnvdClient, workdir: Path) -> None:
    (workdir / "existing").mkdir()
    events = rpc.watch_dir(client, str(workdir), recursive=True, include_entry=True)
    assert isinstance(await anext(events), rpc.WatchStarted)
    await client.write_file(str(workdir / "existing" / "a.txt"), b"hello")  # temp file + rename
    await client.make_dir(str(workdir / "newdir"))
    await client.remove(str(workdir / "existing" / "a.txt"))
    seen: list[rpc.FilesystemEvent] = []

    async def until_removed() -> None:
        async for event in events:
            assert isinstance(event, rpc.FilesystemEvent)
            seen.append(event)
            if event.type == "remove" and event.name == "existing/a.txt":
                return

    await asyncio.wait_for(until_removed(), 5)
    await events.aclose()
    kinds = {(e.name, e.type) for e in seen}
    assert ("existing/a.txt", "create") in kinds  # the rename of the temporary file onto it
    assert ("newdir", "create") in kinds
    created = next(e for e in seen if e.name == "newdir")
    assert created.entry is not None and created.entry.type == "directory"
    with pytest.raises(EnvdError) as exc:
        async for _ in rpc.watch_dir(client, str(workdir / "missing")):
            pass
    assert exc.value.code == "not_found"


def test_upload_with_expect_continue(envd: EnvdProcess, workdir: Path) -> None:
    body = os.urandom(200_000)
    with socket.create_connection(("127.0.0.1", envd.port), timeout=5) as s:
        head = (
            f"POST /files?path={workdir}/curl.bin HTTP/1.1\r\nHost: x\r\nX-Access-Token: {TOKEN}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        s.sendall(head.encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    assert (workdir / "curl.bin").read_bytes() == body


async def test_multipart_and_gzip_uploads_as_e2b_sends_them(envd: EnvdProcess, workdir: Path) -> None:
    import gzip

    first, second = os.urandom(300_000), b"second file\r\n--not-a-boundary\r\n"
    async with httpx.AsyncClient(base_url=envd.url, headers={"X-Access-Token": TOKEN}) as http:
        r = await http.post("/files", files=[
            ("file", (str(workdir / "m" / "one.bin"), first)),
            ("file", (str(workdir / "m" / "two.txt"), second)),
        ])
        assert r.status_code == 200, r.text
        assert [e["path"] for e in r.json()] == [str(workdir / "m" / "one.bin"), str(workdir / "m" / "two.txt")]
        r = await http.post("/files", params={"path": str(workdir / "single.bin")},
                            files=[("file", ("ignored-name", first))])
        assert r.status_code == 200 and r.json()[0]["path"] == str(workdir / "single.bin")
        packed = gzip.compress(first * 20)
        r = await http.post("/files", params={"path": str(workdir / "z.bin")}, content=packed,
                            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        r = await http.post("/files", params={"path": str(workdir / "bad.bin")}, content=b"not gzip",
                            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})
        assert r.status_code == 400
    assert (workdir / "m" / "one.bin").read_bytes() == first
    assert (workdir / "m" / "two.txt").read_bytes() == second
    assert (workdir / "single.bin").read_bytes() == first
    assert (workdir / "z.bin").read_bytes() == first * 20
    assert not (workdir / "bad.bin").exists()
    assert not [n for n in os.listdir(workdir) if n.endswith(".envd-tmp")]
