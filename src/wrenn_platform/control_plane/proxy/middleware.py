"""The port proxy's place in the app: `ControlPlaneApp` takes every request whose Host is
`{port}-{capsule_id}.{proxy domain}` before the API sees it, and a service owns the pool.

A request goes control plane → the host agent that owns the capsule (`agent_link.port_link`:
in process for the embedded agent, a tunnel over the agent link for a remote one) → the capsule's
port. Answers of the proxy itself use the API's error body: 400 bad port, 401 missing key (opt-in),
404 unknown capsule, 409 stopped capsule, 502 nothing listening (the message names the port) or
the capsule's side broke, 504 a resume that took too long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from wrenn_platform.agent_link.client import AgentClient
from wrenn_platform.agent_link.port_link import PortLink, Upstream
from wrenn_platform.wire.agent import AgentError, Conflict
from wrenn_platform.wire.envd import PORT as ENVD_PORT
from wrenn_platform.wire.ports import PortClosed, check_port

from ..capsules.agents import to_api_error
from ..capsules.service import CapsuleService
from ..e2b.routing import e2b_refusal, header_target
from ..errors import ApiError, error_body
from ..settings import Settings
from .gate import ProxyGate
from .hostnames import HostMatcher, proxy_domain
from .http_relay import UpstreamBroken, read_head, request_head, send_body, send_response
from .pool import Key, UpstreamPool
from .ws_relay import HandshakeFailed, deny, relay_websocket

log = logging.getLogger(__name__)

_SWEEP_S = 10.0
_RECHECK_S = 0.05
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})  # safe to send again


class PortProxy:
    def __init__(self, capsules: CapsuleService, settings: Settings) -> None:
        self.capsules = capsules
        self.gate = ProxyGate(capsules, settings)
        self.pool = UpstreamPool()
        self._links: dict[str | None, tuple[AgentClient, PortLink]] = {}

    def _link(self, host_id: str | None) -> PortLink:
        client = self.capsules.agents.get(host_id)
        known = self._links.get(host_id)
        if known is None or known[0] is not client:  # first use, or the host's client was replaced
            known = self._links[host_id] = (client, client.port_link())
        return known[1]

    async def handle(self, scope: Scope, receive: Receive, send: Send, port: int, capsule_id: str,
                     e2b: bool = False) -> None:
        """`e2b`: an E2B client's request (routed by its headers, or to envd), refused in E2B's words."""
        websocket = scope["type"] == "websocket"
        if websocket:
            await receive()  # websocket.connect
        try:
            try:
                check_port(port)
            except AgentError as exc:
                raise _api_error(exc) from exc
            link, upstream, reused = await self._connect(scope, capsule_id, port, websocket)
            if websocket:
                await self._websocket(scope, receive, send, upstream, capsule_id, port)
            else:
                await self._http(scope, receive, send, link, (capsule_id, port), upstream, reused)
        except ApiError as exc:
            if exc.status >= 500:
                log.warning("port proxy %s:%s: %s %s", capsule_id, port, exc.status, exc.message)
            await _answer(scope, send, exc, e2b_refusal(exc, capsule_id) if e2b or port == ENVD_PORT else None)

    async def _connect(self, scope: Scope, capsule_id: str, port: int,
                       websocket: bool) -> tuple[PortLink, Upstream, bool]:
        """A connection to the port (kept or new, for HTTP; new, for a WebSocket) and its link."""
        running = await self.gate.admit(capsule_id, scope)
        deadline = time.monotonic() + self.gate.settings.proxy_resume_timeout_seconds
        while True:
            link = self._link(running.host_id)
            try:
                if websocket:
                    return link, await link.open(capsule_id, port), False
                return link, *(await self._checkout(link, (capsule_id, port)))
            except Conflict as exc:
                # The host has it paused (its inactivity timeout) before the record says so: wait for
                # the record to catch up, then `settle` resumes it.
                if time.monotonic() >= deadline:
                    raise _api_error(exc) from exc
                await asyncio.sleep(_RECHECK_S)
                running = await self.gate.settle(capsule_id, scope)
            except AgentError as exc:
                raise _api_error(exc) from exc

    async def _checkout(self, link: PortLink, key: Key) -> tuple[Upstream, bool]:
        upstream = self.pool.checkout(key)
        if upstream is None:
            return await link.open(*key), False
        try:
            link.touch(*key)
        except BaseException:
            upstream.close()
            raise
        return upstream, True

    async def _http(self, scope: Scope, receive: Receive, send: Send, link: PortLink, key: Key,
                    upstream: Upstream, reused: bool) -> None:
        head_bytes, has_body, chunked = request_head(scope, self.gate.settings.trust_proxy_headers)
        upstream.write(head_bytes)
        request_task = asyncio.current_task()
        assert request_task is not None
        state = {"body_sent": False, "finished": False, "client_gone": False}

        async def client_side() -> None:
            """Stream the request body, then notice a client that leaves before the response ends."""
            try:
                await send_body(receive, upstream, chunked)
                state["body_sent"] = True
            except ConnectionResetError:
                pass  # the client left: the receive below says so at once
            except OSError:
                return  # the capsule's side broke: the response side reports it
            message = await receive()
            if message["type"] == "http.disconnect" and not state["finished"]:
                state["client_gone"] = True
                request_task.cancel()

        watcher = asyncio.create_task(client_side())
        try:
            try:
                try:
                    head = await read_head(upstream.reader, scope["method"])
                except UpstreamBroken:
                    if not (reused and not has_body and scope["method"] in _IDEMPOTENT):
                        raise
                    upstream.close()  # a kept connection the capsule had closed: one fresh try
                    try:
                        upstream = await link.open(*key)
                    except AgentError as exc:
                        raise _api_error(exc) from exc
                    upstream.write(head_bytes)
                    head = await read_head(upstream.reader, scope["method"])
                await send_response(head, upstream.reader, send)
                state["finished"] = True
            except asyncio.CancelledError:
                upstream.close()
                if not state["client_gone"]:
                    raise
                request_task.uncancel()
                return
            except UpstreamBroken as exc:
                upstream.close()
                message = f"port {key[1]} of capsule {key[0]} {exc}"
                if exc.started:
                    log.warning("port proxy %s:%s: %s", key[0], key[1], message)
                    raise
                raise ApiError(502, "bad_gateway", message) from exc
            except OSError as exc:
                upstream.close()
                raise ApiError(502, "bad_gateway", f"port {key[1]} of capsule {key[0]}: {exc}") from exc
        finally:
            watcher.cancel()
        if head.keep_alive and (state["body_sent"] or not has_body):
            self.pool.checkin(key, upstream)
        else:
            upstream.close()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream,
                         capsule_id: str, port: int) -> None:
        try:
            await relay_websocket(scope, receive, send, upstream)
        except (HandshakeFailed, OSError) as exc:
            raise ApiError(502, "bad_gateway", f"port {port} of capsule {capsule_id}: {exc}") from exc
        finally:
            upstream.close()


def _api_error(exc: AgentError) -> ApiError:
    if isinstance(exc, PortClosed):
        return ApiError(502, "bad_gateway", exc.message)
    return to_api_error(exc)


async def _answer(scope: Scope, send: Send, exc: ApiError, answer: tuple[int, bytes] | None = None) -> None:
    status, body = answer or (exc.status, json.dumps(error_body(exc.code, exc.message),
                                                     separators=(",", ":")).encode())  # as the API's
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    with contextlib.suppress(Exception):  # the client may be gone, or the response already begun
        if scope["type"] == "websocket":
            await deny(scope, send, status, headers, body)
        else:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class ControlPlaneApp(FastAPI):
    """The API's FastAPI app with the port proxy in front of everything: a request whose Host names
    a capsule port is taken before FastAPI's and Starlette's own layers (about a seventh of the
    server's CPU per proxied request); every other request, and the lifespan, go on as usual."""

    port_hosts: HostMatcher | None = None  # set by `create_app` from the settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.port_hosts is not None and (scope["type"] == "http" or scope["type"] == "websocket"):
            for name, value in scope["headers"]:
                if name == b"host":
                    target = self.port_hosts.match(value)
                    if target is not None:
                        scope["app"] = self  # as Starlette does: Request(scope).app for the key check
                        await self.state.port_proxy.handle(scope, receive, send, *target)
                        return
                    break
            target = header_target(scope)  # E2B_SANDBOX_URL: routed by headers, whatever the Host
            if target is not None:
                scope["app"] = self
                await self.state.port_proxy.handle(scope, receive, send, *target, e2b=True)
                return
        await super().__call__(scope, receive, send)


def port_hosts(settings: Settings) -> HostMatcher:
    return HostMatcher(proxy_domain(settings.proxy_domain, settings.public_url))


@asynccontextmanager
async def port_proxy(app: FastAPI) -> AsyncIterator[None]:
    proxy = PortProxy(app.state.capsules, app.state.settings)
    app.state.port_proxy = proxy
    log.info("port proxy: {port}-{capsule id}.%s", proxy_domain(app.state.settings.proxy_domain,
                                                              app.state.settings.public_url))

    async def sweep() -> None:
        while True:
            await asyncio.sleep(_SWEEP_S)
            proxy.pool.sweep()

    task = asyncio.create_task(sweep(), name="port-proxy-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        proxy.pool.close()
