"""Exec (foreground, background), processes, and files inside a real capsule, through the API."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import httpx

from .conftest import Env


async def test_foreground_exec(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec",
                       json={"cmd": "sh", "args": ["-c", "echo out; echo err >&2; exit 3"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["stdout"], body["stderr"], body["exit_code"]) == ("out\n", "err\n", 3)
    assert body["sandbox_id"] == shared_capsule and body["cmd"] == "sh"
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0
    assert body["encoding"] == "utf-8"


async def test_exec_bad_requests(api: httpx.AsyncClient, shared_capsule: str) -> None:
    for body in ({}, {"cmd": ""}, {"cmd": "true", "timeout_sec": 0}, {"cmd": "true", "args": "x"}):
        r = await api.post(f"/v1/capsules/{shared_capsule}/exec", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    for path in ("files/list", "files/mkdir", "files/remove", "files/read", "files/stream/read"):
        r = await api.post(f"/v1/capsules/{shared_capsule}/{path}", json={})
        assert r.status_code == 400, (path, r.text)


async def test_hostile_input_is_400_not_5xx(api: httpx.AsyncClient, shared_capsule: str) -> None:
    """Values that once reached a 5xx: a NUL byte bound for execve or open (502), an integer beyond
    the database's (500). Each is a 400 invalid_request naming the field."""
    exec_cases = [
        ({"cmd": "echo\x00x"}, "cmd"),
        ({"cmd": "echo", "args": ["a", "b\x00"]}, "args"),
        ({"cmd": "env", "background": True, "envs": {"A": "x\x00y"}}, "envs"),
        ({"cmd": "env", "background": True, "envs": {"A\x00": "x"}}, "envs"),
        ({"cmd": "pwd", "background": True, "cwd": "/tmp\x00"}, "cwd"),
        ({"cmd": "true", "timeout_sec": 9223372036854775808}, "timeout_sec"),
    ]
    for body, field in exec_cases:
        r = await api.post(f"/v1/capsules/{shared_capsule}/exec", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request" and field in r.json()["error"]["message"], r.text
    for path in ("files/list", "files/mkdir", "files/remove", "files/read", "files/stream/read"):
        r = await api.post(f"/v1/capsules/{shared_capsule}/{path}", json={"path": "/tmp/a\x00b"})
        assert r.status_code == 400 and "path" in r.json()["error"]["message"], (path, r.text)
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write",
                       files={"file": ("f", b"x")}, data={"path": "/tmp/a\x00b"})
    assert r.status_code == 400 and "path" in r.json()["error"]["message"], r.text
    for timeout in (9223372036854775808, 2**63 - 1, 365 * 24 * 3600 + 1):
        r = await api.post("/v1/capsules", json={"template": "minimal", "timeout_sec": timeout})
        assert r.status_code == 400 and "timeout_sec" in r.json()["error"]["message"], (timeout, r.text)


async def test_exec_binary_output_is_base64(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec",
                       json={"cmd": "printf", "args": ["\\377\\376abc"]})
    body = r.json()
    assert body["encoding"] == "base64", body
    assert base64.b64decode(body["stdout"]) == b"\xff\xfeabc"


async def test_exec_timeout(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec",
                       json={"cmd": "sleep", "args": ["30"], "timeout_sec": 1})
    assert r.status_code == 200, r.text
    assert r.json()["exit_code"] != 0
    assert 900 <= r.json()["duration_ms"] < 15_000  # cut at its 1 s timeout, well before the 30 s it wanted


async def test_background_process_list_stream_and_kill(api: httpx.AsyncClient, shared_capsule: str) -> None:
    tag = f"web-{secrets.token_hex(3)}"
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec",
                       json={"cmd": "sh", "args": ["-c", "echo started; echo $FOO; pwd; sleep 600"],
                             "background": True, "tag": tag, "envs": {"FOO": "bar"}, "cwd": "/tmp"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["tag"] == tag and body["pid"] > 0 and body["sandbox_id"] == shared_capsule
    r = await api.post(f"/v1/capsules/{shared_capsule}/exec", json={"cmd": "sleep", "args": ["600"],
                                                                   "background": True})
    auto = r.json()
    assert r.status_code == 202 and auto["tag"].startswith("proc-") and len(auto["tag"]) == len("proc-") + 8
    procs = (await api.get(f"/v1/capsules/{shared_capsule}/processes")).json()["processes"]
    by_tag = {p.get("tag"): p for p in procs}
    assert by_tag[tag]["pid"] == body["pid"] and by_tag[tag]["cmd"] == "sh"
    assert auto["tag"] in by_tag
    # kill by tag with SIGTERM, by pid with the default SIGKILL
    assert (await api.delete(f"/v1/capsules/{shared_capsule}/processes/{tag}",
                             params={"signal": "SIGTERM"})).status_code == 204
    assert (await api.delete(f"/v1/capsules/{shared_capsule}/processes/{auto['pid']}")).status_code == 204
    for _ in range(100):
        tags = {p.get("tag") for p in (await api.get(f"/v1/capsules/{shared_capsule}/processes")).json()["processes"]}
        if tag not in tags and auto["tag"] not in tags:
            break
        await asyncio.sleep(0.05)
    assert tag not in tags and auto["tag"] not in tags
    r = await api.delete(f"/v1/capsules/{shared_capsule}/processes/no-such-tag")
    assert r.status_code == 404, r.text
    r = await api.delete(f"/v1/capsules/{shared_capsule}/processes/{tag}", params={"signal": "SIGHUP"})
    assert r.status_code == 400, r.text


async def test_files_roundtrip(api: httpx.AsyncClient, shared_capsule: str) -> None:
    base = f"/tmp/files-{secrets.token_hex(3)}"
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/mkdir", json={"path": base})
    assert r.status_code == 200, r.text
    assert r.json()["entry"]["type"] == "directory" and r.json()["entry"]["path"] == base
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/mkdir", json={"path": base})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_exists"
    data = secrets.token_bytes(200_000)
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write",
                       files={"file": ("blob.bin", data)}, data={"path": f"{base}/blob.bin"})
    assert r.status_code == 204, r.text
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": f"{base}/blob.bin"})
    assert r.status_code == 200 and r.content == data
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/stream/read", json={"path": f"{base}/blob.bin"})
    assert r.status_code == 200 and r.content == data
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/stream/write",
                       files={"file": ("s.txt", b"streamed\n")}, data={"path": f"{base}/s.txt"})
    assert r.status_code == 204, r.text
    out = await api.post(f"/v1/capsules/{shared_capsule}/exec", json={"cmd": "cat", "args": [f"{base}/s.txt"]})
    assert out.json()["stdout"] == "streamed\n"
    listing = await api.post(f"/v1/capsules/{shared_capsule}/files/list", json={"path": base})
    assert listing.status_code == 200, listing.text
    entries = {e["name"]: e for e in listing.json()["entries"]}
    assert entries["blob.bin"]["size"] == len(data) and entries["blob.bin"]["type"] == "file"
    assert entries["s.txt"]["permissions"].startswith("-")
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/remove", json={"path": f"{base}/s.txt"})
    assert r.status_code == 204
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": f"{base}/s.txt"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/stream/read", json={"path": f"{base}/nope"})
    assert r.status_code == 404


async def test_upload_limit_413(api: httpx.AsyncClient, shared_capsule: str) -> None:
    too_big = b"x" * (1024 * 1024 + 4096)  # the test server's limit is 1 MiB
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write",
                       files={"file": ("big", too_big)}, data={"path": "/tmp/big"})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    # without a Content-Length the limit is enforced while streaming, and no partial file is left
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write",
                       content=_chunked_upload("/tmp/big-chunked", too_big),
                       headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 413, r.text
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": "/tmp/big-chunked"})
    assert r.status_code == 404, r.status_code
    # the streaming variant has no such limit
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/stream/write",
                       files={"file": ("big", too_big)}, data={"path": "/tmp/big-streamed"})
    assert r.status_code == 204, r.text


BOUNDARY = "wrenn-test-boundary"


async def _chunked_upload(path: str, data: bytes) -> AsyncIterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n").encode()
    for i in range(0, len(data), 64 * 1024):
        yield data[i:i + 64 * 1024]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_upload_path_as_query_parameter(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/stream/write", params={"path": "/tmp/q.txt"},
                       files={"file": ("q", b"query\n")})
    assert r.status_code == 204, r.text
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": "/tmp/q.txt"})
    assert r.content == b"query\n"


async def test_upload_needs_path_and_file(api: httpx.AsyncClient, shared_capsule: str) -> None:
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write", data={"path": "/tmp/x"},
                       files={"other": ("o", b"1")})
    assert r.status_code == 400, r.text
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write", files={"file": ("f", b"1")})
    assert r.status_code == 400, r.text
    r = await api.post(f"/v1/capsules/{shared_capsule}/files/write", json={"path": "/tmp/x"})
    assert r.status_code == 415, r.text


def _multipart_head(path: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n").encode()


async def test_a_write_completes_or_leaves_nothing(env: Env, api: httpx.AsyncClient, shared_capsule: str) -> None:
    """A truncated upload — a body without the part's closing boundary, or a client gone mid-body —
    leaves neither partial data nor a temporary file, and an existing file untouched."""
    base = f"/tmp/atomic-{secrets.token_hex(3)}"
    kept, fresh = f"{base}/kept.txt", f"{base}/fresh.txt"
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for route in ("files/write", "files/stream/write"):
        r = await api.post(f"/v1/capsules/{shared_capsule}/{route}", files={"file": ("f", b"original\n")},
                           data={"path": kept})
        assert r.status_code == 204, r.text
        for target in (kept, fresh):
            r = await api.post(f"/v1/capsules/{shared_capsule}/{route}",
                               content=_multipart_head(target) + b"partial data", headers=multipart)
            assert r.status_code == 400 and "truncated" in r.json()["error"]["message"], (route, r.text)
        # the client goes away mid-body: no answer to read, and nothing written
        host, port = env.server.url.removeprefix("http://").split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        body = _multipart_head(kept) + b"x" * 100_000
        writer.write((f"POST /v1/capsules/{shared_capsule}/{route} HTTP/1.1\r\nHost: {host}\r\n"
                      f"X-API-Key: {env.a.api_key}\r\nContent-Length: {len(body) + 1_000_000}\r\n"
                      f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode() + body)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()
        await asyncio.sleep(1.0)
        r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": kept})
        assert (r.status_code, r.content) == (200, b"original\n"), route
        r = await api.post(f"/v1/capsules/{shared_capsule}/files/read", json={"path": fresh})
        assert r.status_code == 404, route
        listing = await api.post(f"/v1/capsules/{shared_capsule}/files/list", json={"path": base})
        assert [e["name"] for e in listing.json()["entries"]] == ["kept.txt"], listing.text  # no temp file left
