"""The proxy's pure parts in process: which Host names a capsule port, the request head sent to
the capsule, how a response head from it is read (framing, keep-alive, what is dropped), and the
wait for a record that lags behind its host."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from wrenn_platform.control_plane.capsules.running_cache import RunningCapsule
from wrenn_platform.control_plane.errors import ApiError
from wrenn_platform.control_plane.proxy.hostnames import HostMatcher, proxy_domain
from wrenn_platform.control_plane.proxy.http_relay import UpstreamBroken, host_only_cookie, read_head, request_head
from wrenn_platform.control_plane.proxy.middleware import PortProxy
from wrenn_platform.control_plane.proxy.pool import UpstreamPool
from wrenn_platform.wire.agent import Conflict


def test_proxy_domain_and_host_matching() -> None:
    assert proxy_domain("", "http://127.0.0.1:8080") == "localhost"  # make run: *.127.0.0.1 resolves nowhere
    assert proxy_domain("localhost:8080", "") == "localhost"  # the client-side value works here too
    assert proxy_domain("", "https://Wrenn.Example.com") == "wrenn.example.com"
    m = HostMatcher("localhost")
    assert m.match(b"8000-cl-0a1b.localhost:8080") == (8000, "cl-0a1b")
    assert m.match(b"8000-CL-0A1B.LOCALHOST") == (8000, "cl-0a1b")  # browsers may send any case
    assert m.match(b"localhost:8080") is None  # the API itself
    assert m.match(b"x.8000-cl-a.localhost") is None
    assert m.match(b"8000-cl-a.localhost.evil.com") is None
    assert m.match(b"123456-cl-a.localhost") is None


def _scope(headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, object]:
    return {"type": "http", "method": method, "path": "/p", "raw_path": b"/p%20q", "query_string": b"a=1",
            "headers": headers, "client": ("10.0.0.9", 5555), "scheme": "https"}


def test_request_head_drops_hop_by_hop_and_the_api_key() -> None:
    head, has_body, chunked = request_head(_scope([
        (b"host", b"8000-cl-a.localhost"), (b"connection", b"keep-alive, x-hop"), (b"keep-alive", b"5"),
        (b"x-api-key", b"wrn_secret"), (b"x-forwarded-for", b"6.6.6.6"), (b"expect", b"100-continue"),
        (b"content-length", b"3"), (b"cookie", b"a=b")]))
    assert head.startswith(b"POST /p%20q?a=1 HTTP/1.1\r\nhost: 8000-cl-a.localhost\r\n")
    assert b"wrn_secret" not in head and b"keep-alive" not in head and b"6.6.6.6" not in head
    assert b"expect" not in head and b"cookie: a=b\r\n" in head and b"content-length: 3\r\n" in head
    assert head.endswith(b"x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: https\r\n\r\n")
    assert (has_body, chunked) == (True, False)


def test_forwarded_headers_are_kept_only_behind_a_trusted_proxy() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]
    trusted, _, _ = request_head(_scope(headers), trust_forwarded=True)
    assert b"x-forwarded-for: 203.0.113.7, 10.0.0.9\r\n" in trusted and b"x-forwarded-proto: https\r\n" in trusted
    direct, _, _ = request_head(_scope([(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"ftp")]))
    assert b"203.0.113.7" not in direct and b"x-forwarded-proto: https\r\n" in direct  # the scope's own scheme


def test_a_chunked_request_carries_no_content_length() -> None:
    head, has_body, chunked = request_head(_scope([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]))
    assert (has_body, chunked) == (True, True)
    assert b"content-length" not in head and head.count(b"transfer-encoding: chunked\r\n") == 1
    assert request_head(_scope([], "GET"))[1:] == (False, False)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_response_heads() -> None:
    head = await read_head(_reader(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                   b"Connection: keep-alive\r\nDate: x\r\nServer: app\r\n\r\nhello"), "GET")
    assert (head.status, head.length, head.chunked, head.keep_alive) == (200, 5, False, True)
    assert head.headers == [(b"content-length", b"5"), (b"server", b"app")]  # date: the ASGI server's own
    head = await read_head(_reader(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"),
                           "GET")
    assert head.chunked and head.length is None and head.headers == []
    head = await read_head(_reader(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"), "HEAD")
    assert head.length == 0 and head.headers == [(b"content-length", b"1048576")]
    head = await read_head(_reader(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"), "GET")
    assert head.length is None and not head.chunked and not head.keep_alive
    assert (await read_head(_reader(b"HTTP/1.1 204 No Content\r\n\r\n"), "GET")).length == 0
    for broken in (b"", b"HTTP/1.1 200 OK\r\nContent-", b"SSH-2.0-OpenSSH_9.2\r\n\r\n"):
        with pytest.raises(UpstreamBroken):
            await read_head(_reader(broken), "GET")


def test_capsule_cookies_stay_with_the_capsule_host() -> None:
    assert host_only_cookie(b"sid=1; Path=/; HttpOnly") == b"sid=1; Path=/; HttpOnly"
    assert host_only_cookie(b"wrenn_csrf=x; Domain=localhost; Path=/") == b"wrenn_csrf=x; Path=/"
    assert host_only_cookie(b"a=domain; DOMAIN=.example.com") == b"a=domain"


class _Link:
    """A host that has the capsule paused for its first `refusals` connections."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals

    def touch(self, capsule_id: str, port: int) -> None:
        pass

    async def open(self, capsule_id: str, port: int) -> object:
        if self.refusals:
            self.refusals -= 1
            raise Conflict(f"capsule {capsule_id} is paused, not running")
        return "connection"


class _Gate:
    def __init__(self, timeout_s: float) -> None:
        self.settings = SimpleNamespace(proxy_resume_timeout_seconds=timeout_s)
        self.settled = 0

    async def admit(self, capsule_id: str, scope: object) -> RunningCapsule:
        return RunningCapsule("team-a", "host-1")

    async def settle(self, capsule_id: str, scope: object) -> RunningCapsule:
        self.settled += 1  # the real one reads the record and resumes a paused capsule
        return RunningCapsule("team-a", "host-1")


def _proxy(link: _Link, gate: _Gate) -> PortProxy:
    proxy = PortProxy.__new__(PortProxy)
    proxy.gate, proxy.pool = gate, UpstreamPool()  # type: ignore[assignment]
    proxy._link = lambda host_id: link  # type: ignore[assignment, method-assign, return-value]
    return proxy


async def test_a_host_that_paused_the_capsule_before_the_record_says_so_is_waited_for() -> None:
    gate = _Gate(timeout_s=5)
    _, upstream, reused = await _proxy(_Link(refusals=3), gate)._connect({}, "cl-a", 8000, websocket=True)
    assert upstream == "connection" and not reused and gate.settled == 3
    with pytest.raises(ApiError) as refused:
        await _proxy(_Link(refusals=1000), _Gate(timeout_s=0.2))._connect({}, "cl-a", 8000, websocket=True)
    assert refused.value.status == 409
