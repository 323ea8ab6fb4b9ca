"""HTTP through the port proxy: plain GETs (Host header and the `*.localhost` name), keep-alive,
headers both ways, SSE as it streams, 100 MiB down and up without the server holding it, and the
proxy's own answers (404 / 409 / 502 / 400)."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from .conftest import APP_PORT, STATIC_PORT, Server, create_capsule

pytestmark = pytest.mark.root


async def test_http_server_in_a_capsule_answers_by_host_header_and_by_name(server: Server, served: str) -> None:
    async with server.proxied(served, STATIC_PORT) as c:
        r = await c.get("/index.txt")
    assert r.status_code == 200, r.text
    assert r.text == "served by http.server\n"
    # The name itself: glibc resolves *.localhost to loopback through libnss-myhostname.
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.get(f"http://{server.host(served, STATIC_PORT)}/index.txt")
    assert r.status_code == 200 and r.text == "served by http.server\n"


async def test_keep_alive_headers_and_the_api_key_stays_out(server: Server, served: str) -> None:
    async with server.proxied(served, APP_PORT, headers={"X-API-Key": server.a.api_key}) as c:
        bodies = [await c.get("/") for _ in range(20)]
        r = await c.get("/headers", headers={"X-Custom": "kept", "Authorization": "Bearer app-token"})
    assert all(b.status_code == 200 and b.text == "hello from the capsule" for b in bodies)
    seen = r.json()
    assert seen["host"] == server.host(served, APP_PORT)  # the capsule sees the name the client used
    assert seen["x-custom"] == "kept" and seen["authorization"] == "Bearer app-token"
    assert "x-api-key" not in seen  # a Wrenn credential never reaches code in the capsule
    servers = r.headers.get_list("server")  # the capsule's own, once (not the proxy's too)
    assert len(servers) == 1 and servers[0].startswith("BaseHTTP"), servers
    assert seen["x-forwarded-for"] == "127.0.0.1"


async def test_server_sent_events_arrive_as_they_are_sent(server: Server, served: str) -> None:
    arrivals: list[float] = []
    async with server.proxied(served, APP_PORT) as c, c.stream("GET", "/sse?n=4&gap=0.5") as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    # Buffered whole, all four would arrive together after ~2 s; streamed, they are ~0.5 s apart.
    assert arrivals[1] - arrivals[0] > 0.3 and arrivals[3] - arrivals[0] > 1.2


async def test_100_mib_download_streams_with_flat_server_memory(server: Server, served: str) -> None:
    before = server.rss_kib()
    peak, total, digest = before, 0, hashlib.sha256()
    async with server.proxied(served, APP_PORT) as c, c.stream("GET", "/big?mib=100") as r:
        assert r.status_code == 200 and r.headers["content-length"] == str(100 << 20)
        async for chunk in r.aiter_bytes():
            total += len(chunk)
            digest.update(chunk)
            if total % (8 << 20) < len(chunk):
                peak = max(peak, server.rss_kib())
    expected = hashlib.sha256(bytes(range(256)) * 4096 * 100).hexdigest()
    assert total == 100 << 20 and digest.hexdigest() == expected
    assert peak - before < 32 * 1024, f"server RSS grew {peak - before} KiB during a 100 MiB download"


async def test_100_mib_chunked_upload_streams(server: Server, served: str) -> None:
    block = bytes(range(256)) * 4096
    before = server.rss_kib()
    peak = before

    async def body():  # type: ignore[no-untyped-def]
        nonlocal peak
        for i in range(100):
            if i % 8 == 0:
                peak = max(peak, server.rss_kib())
            yield block

    async with server.proxied(served, APP_PORT) as c:
        r = await c.post("/digest", content=body())
    assert r.status_code == 200, r.text
    assert r.json() == {"length": 100 << 20, "sha256": hashlib.sha256(block * 100).hexdigest()}
    assert peak - before < 32 * 1024, f"server RSS grew {peak - before} KiB during a 100 MiB upload"


async def test_body_with_content_length_and_head(server: Server, served: str) -> None:
    data = b"x" * 300_000
    async with server.proxied(served, APP_PORT) as c:
        r = await c.post("/digest", content=data)
    assert r.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    async with server.proxied(served, STATIC_PORT) as c:
        head = await c.head("/index.txt")  # a length and no body: the next request on the connection still works
        again = await c.get("/index.txt")
    assert head.status_code == 200 and head.headers["content-length"] == "22" and head.content == b""
    assert again.text == "served by http.server\n"


async def test_unknown_capsule_is_404_and_bad_port_400(server: Server) -> None:
    async with server.proxied("cl-0000000000000000", APP_PORT) as c:
        r = await c.get("/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    async with server.proxied("cl-0000000000000000", 70000) as c:
        r = await c.get("/")
    assert r.status_code == 400 and "70000" in r.json()["error"]["message"]
    # envd's port is E2B's (its clients reach envd through the proxy): refused in E2B's words
    async with server.proxied("cl-0000000000000000", 49983) as c:
        r = await c.get("/health")
    assert r.status_code == 502 and "was not found" in r.json()["message"]


async def test_nothing_listening_is_502_naming_the_port(server: Server, served: str) -> None:
    async with server.proxied(served, 9999) as c:
        r = await c.get("/")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "bad_gateway" and "port 9999" in r.json()["error"]["message"]


async def test_stopped_capsule_is_409(server: Server, api_a: httpx.AsyncClient) -> None:
    capsule_id = await create_capsule(api_a)
    assert (await api_a.delete(f"/v1/capsules/{capsule_id}")).status_code == 202
    from ..capsules.conftest import wait_status
    await wait_status(api_a, capsule_id, "stopped")
    async with server.proxied(capsule_id, APP_PORT) as c:
        r = await c.get("/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    assert "stopped" in r.json()["error"]["message"]


async def test_the_api_itself_is_untouched(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/health")
    assert r.status_code == 200 and json.loads(r.text)["status"] == "ok"
