"""envd's lifecycle: listen, handle signals (also as PID 1), shut down cleanly."""

from __future__ import annotations

import _socket
import os
import sys

from . import aio
from .aio import suppress
from .app import Envd
from .httpio import serve_connection
from .protocol import PORT

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # `signal` wraps these in enums (an `enum` import at start)

FORWARDED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
SHUTDOWN_GRACE = 2.0


SETTLE_AFTER = 1.0  # seconds after the first answer: past a capsule's /init and first command


def _finish_start(envd: Envd) -> None:
    """What can wait until envd has answered its first request (the host's /health poll), so it
    overlaps the host's next steps: the modules a first command needs and adopting orphans. Giving
    back start-up's garbage (gc, `malloc_trim` through ctypes, ~0.1 s under TCG) waits longer."""
    import json  # noqa: F401
    import subprocess  # noqa: F401

    envd.processes.become_subreaper()
    aio.get_running_loop().call_later(SETTLE_AFTER, _settle_memory)


def _settle_memory() -> None:
    """Give back what start-up used only transiently (imports' garbage, freed malloc pages)."""
    import gc

    gc.collect()
    gc.freeze()  # start-up's objects live forever: later collections need not scan them
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _listen(host: str, port: int) -> _socket.socket:
    """The listening socket, bound and non-blocking."""
    family, kind, proto, _, address = _socket.getaddrinfo(
        host or None, port, type=_socket.SOCK_STREAM, flags=_socket.AI_PASSIVE
    )[0]
    sock = _socket.socket(family, kind, proto)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(100)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    host: str = "0.0.0.0",
    port: int = PORT,
    access_token: str | None = None,
    output_bound: int = 8 * 1024 * 1024,
    pty_idle_timeout: float = 600.0,
    ready: aio.Future | None = None,
) -> None:
    loop = aio.get_running_loop()
    envd = Envd(access_token, output_bound, pty_idle_timeout)
    envd.after_first_request = lambda: _finish_start(envd)
    envd.processes.start_reaper()
    stop = aio.Event()
    received: list[int] = []

    def on_stop(sig: int) -> None:
        received.append(sig)
        stop.set()

    def forward(sig: int) -> None:
        for process in envd.processes.list():
            with suppress(OSError):
                os.killpg(process.pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    for sig in FORWARDED:
        loop.add_signal_handler(sig, forward, sig)
    server = await aio.start_server(
        lambda reader, writer: serve_connection(reader, writer, envd), sock=_listen(host, port), limit=1024 * 1024
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"envd listening on {host}:{bound}", file=sys.stderr, flush=True)
    if ready is not None:
        ready.set_result(bound)
    try:
        await stop.wait()
    finally:
        server.close()
        # Children first get the signal envd got, then SIGKILL after a grace period.
        if received:
            forward(received[0])
        exits = [p.exit_event.wait() for p in envd.processes.list()]
        if exits:
            await aio.wait([aio.ensure_future(e) for e in exits], timeout=SHUTDOWN_GRACE)
        envd.shutdown()


def run(
    host: str = "0.0.0.0",
    port: int = PORT,
    access_token: str | None = None,
    output_bound: int = 8 * 1024 * 1024,
    pty_idle_timeout: float = 600.0,
) -> None:
    aio.run(serve(host, port, access_token, output_bound, pty_idle_timeout))
