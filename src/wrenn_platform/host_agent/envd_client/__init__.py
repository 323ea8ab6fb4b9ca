"""The host side's client for envd, the agent inside every capsule.

Every call the host agent and its runtimes make into a capsule goes through `EnvdClient`: Connect
RPC with the JSON codec (`process.Process`, `filesystem.Filesystem`) and plain HTTP for `/files`,
`/init`, `/health`, `/version`, `/metrics`, all over one keep-alive HTTP/1.1 transport. The
protocol is described in `docs/envd-protocol.md`.

    async with EnvdClient(envd_url("10.11.0.2"), access_token=token) as envd:
        result = await envd.run("echo", ["hi"], timeout=10)
        async for event in envd.start("sleep", ["100"], tag="web"):
            ...

Modules: `values` (what calls return), `codec` (Connect envelopes and messages), `errors`
(envd's failures as `EnvdError`), `transport` (HTTP/1.1 on `httptools`), `client` (the calls).
"""

from .client import EnvdClient
from .errors import EnvdError, EnvdUnavailable
from .values import (
    CommandResult,
    GuestMetrics,
    ProcessEnded,
    ProcessEvent,
    ProcessInfo,
    ProcessOutput,
    ProcessStarted,
    PtySize,
    Selector,
    SignalName,
    Stream,
)

__all__ = [
    "CommandResult",
    "EnvdClient",
    "EnvdError",
    "EnvdUnavailable",
    "GuestMetrics",
    "ProcessEnded",
    "ProcessEvent",
    "ProcessInfo",
    "ProcessOutput",
    "ProcessStarted",
    "PtySize",
    "Selector",
    "SignalName",
    "Stream",
]
