"""Bad input gets a clear error and envd keeps serving."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import httpx
import pytest

from wrenn_platform.host_agent.envd_client import EnvdClient, EnvdError, ProcessStarted

from . import rpc
from .conftest import TOKEN, EnvdProcess


async def expect(call: object, code: str, text: str = "") -> None:
    with pytest.raises(EnvdError) as exc:
        await call  # type: ignore[misc]
    assert exc.value.code == code, exc.value
    assert text in exc.value.message


async def test_process_start_errors(client: EnvdClient, workdir: Path) -> None:
    private = workdir / "private"
    private.mkdir(mode=0o700)
    (workdir / "noexec").write_text("#!/bin/sh\n")
    await expect(client.run("/no/such/binary"), "not_found", "/no/such/binary")
    await expect(client.run("no-such-command-anywhere"), "not_found")
    await expect(client.run("true", cwd=str(workdir / "missing")), "invalid_argument", "does not exist")
    await expect(client.run("true", cwd=str(workdir / "noexec")), "invalid_argument", "not a directory")
    await expect(client.run("true", cwd=str(private), user="nobody"), "permission_denied")
    await expect(client.run("true", user="no-such-user"), "invalid_argument", "no-such-user")
    await expect(client.run(str(workdir / "noexec")), "permission_denied")
    await expect(client.run(""), "invalid_argument")
    assert (await client.run("true")).exit_code == 0


async def test_selecting_missing_processes(client: EnvdClient) -> None:
    await expect(client.send_signal(999_999, "SIGKILL"), "not_found")
    await expect(client.send_signal("no-such-tag"), "not_found")
    await expect(client.send_input("no-such-tag", b"x"), "not_found")
    await expect(rpc.close_stdin(client, 999_999), "not_found")
    await expect(client.resize_pty("no-such-tag", 10, 10), "not_found")
    with pytest.raises(EnvdError) as exc:
        async for _ in client.connect("no-such-tag"):
            pass
    assert exc.value.code == "not_found"


async def test_input_to_closed_stdin_and_wrong_kinds(client: EnvdClient) -> None:
    info = await client.start_background("sleep", ["30"], stdin=False, tag="no-stdin")
    await expect(client.send_input("no-stdin", b"x"), "failed_precondition", "stdin")
    await expect(client.send_input("no-stdin", b"x", pty=True), "failed_precondition")
    await expect(client.resize_pty("no-stdin", 80, 24), "failed_precondition")
    other = await client.start_background("sleep", ["30"], stdin=True)
    await client.send_input(other.pid, b"ignored")
    await rpc.close_stdin(client, other.pid)
    await expect(client.send_input(other.pid, b"x"), "failed_precondition", "closed")
    # A process that closed its own stdin: the write fails cleanly too.
    gone = await client.start_background("sh", ["-c", "exec 0<&-; sleep 30"], stdin=True)
    await asyncio.sleep(0.2)
    await expect(client.send_input(gone.pid, b"x" * 200_000), "failed_precondition", "closed")
    for pid in (info.pid, other.pid, gone.pid):
        await client.send_signal(pid, "SIGKILL")


async def test_malformed_requests(envd: EnvdProcess, client: EnvdClient) -> None:
    headers = {"X-Access-Token": TOKEN}
    async with httpx.AsyncClient(base_url=envd.url, headers=headers) as http:
        r = await http.post("/process.Process/List", content=b"{not json",
                            headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_argument"
        r = await http.post("/process.Process/SendSignal", json={"process": {"pid": 1}, "signal": "HUP"})
        assert r.json()["code"] in ("invalid_argument", "not_found")
        r = await http.post("/nope.Service/Call", json={})
        assert r.status_code == 404
        r = await http.post("/filesystem.Filesystem/NoSuchMethod", json={})
        assert r.status_code == 501 and r.json()["code"] == "unimplemented"
        r = await http.post("/process.Process/Start", content=b"\x00\x00\x00\x00\x05[1,2",
                            headers={"Content-Type": "application/connect+json"})
        assert r.status_code == 200 and b'"error"' in r.content
        r = await http.post("/filesystem.Filesystem/ListDir", json={"path": "/", "depth": 1000})
        assert r.json()["code"] == "invalid_argument"
        cat = await client.start_background("cat", stdin=True)
        for bad in ("aGk==", "a b", "aé", "YQ==YQ=="):  # not strict base64 (one not even ASCII)
            r = await http.post("/process.Process/SendInput",
                                json={"process": {"pid": cat.pid}, "input": {"stdin": bad}})
            assert r.status_code == 400 and r.json()["code"] == "invalid_argument", bad
        await client.send_signal(cat.pid, "SIGKILL")
        r = await http.post("/filesystem.Filesystem/Stat", json={"path": "/"},
                            headers={"Authorization": b"Basic cm9vdDo=\xe9"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_argument"
    with socket.create_connection(("127.0.0.1", envd.port)) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert (await client.run("true")).exit_code == 0


async def test_client_vanishing_mid_upload_leaves_nothing(envd: EnvdProcess, client: EnvdClient,
                                                          workdir: Path) -> None:
    with socket.create_connection(("127.0.0.1", envd.port)) as s:
        head = (
            f"POST /files?path={workdir}/partial.bin HTTP/1.1\r\nHost: x\r\n"
            f"X-Access-Token: {TOKEN}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 100000000\r\n\r\n"
        )
        s.sendall(head.encode() + b"x" * 3_000_000)
    for _ in range(50):
        await asyncio.sleep(0.05)
        if not os.listdir(workdir):
            break
    assert os.listdir(workdir) == []
    await client.write_file(str(workdir / "after.bin"), b"fine")
    assert os.listdir(workdir) == ["after.bin"]


async def test_client_vanishing_mid_stream_keeps_the_process(client: EnvdClient, envd: EnvdProcess) -> None:
    events = client.start("sh", ["-c", "yes | head -c 50000000; sleep 0.2"], tag="firehose")
    first = await anext(events)
    assert isinstance(first, ProcessStarted)
    await events.aclose()
    async with envd.client() as other:
        result = [e async for e in other.connect("firehose")]
    assert result[-1].exit_code == 0  # type: ignore[union-attr]


async def test_full_disk(client: EnvdClient, small_disk: Path) -> None:
    await expect(client.write_file(str(small_disk / "big"), os.urandom(3 * 1024 * 1024)),
                 "resource_exhausted", "disk space")
    assert os.listdir(small_disk) == []  # the temporary file was removed
    await client.write_file(str(small_disk / "small"), b"still works")
    assert (small_disk / "small").read_bytes() == b"still works"
