"""The few envd calls the runtime itself makes, through the host agent's `EnvdClient`.

After every restore the guest's clock is where it was at the snapshot and (after a clone) its RNG
state is the template's: `/init` carries the host's time (envd sets the clock) and a short
command mixes host randomness into `/dev/urandom`. A fresh client (fresh connections) each time:
after a clone the host's old sockets to that address go silent rather than reset.

Failures are the client's `EnvdError`s (`EnvdUnavailable` when envd cannot be reached).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from wrenn_platform.host_agent.envd_client import (
    CommandResult,
    EnvdClient,
    EnvdError,
    EnvdUnavailable,
    ProcessEnded,
    ProcessEvent,
)

from . import reseed as reseed_program


async def wait_version(url: str, token: str, limit_s: float, alive: Callable[[], bool] | None = None) -> str:
    """Poll `/version` until envd answers, and return the version: readiness and the capsule's
    `envd_version` in one request (under TCG each first request to a fresh envd costs ~0.1-0.3 s
    of translation). `alive()` returning False aborts early (the VM died)."""
    deadline = time.monotonic() + limit_s
    async with EnvdClient(url, token, timeout=5.0, connect_timeout=0.5) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise EnvdUnavailable("the VM exited before envd answered")
            try:
                return await client.version()
            except EnvdError as exc:
                if exc.code not in ("unavailable", "deadline_exceeded"):
                    raise
            await asyncio.sleep(0.02)
    raise EnvdUnavailable(f"envd at {url} did not answer within {limit_s:.0f} s")


# A first /init slower than this may leave the guest clock behind by as much (envd corrects skews
# above 1 s, and the tests allow 1.2 s).
STALE_CLOCK_S = 0.5


async def init(
    url: str,
    token: str,
    *,
    new_token: str | None = None,
    env_vars: dict[str, str] | None = None,
    default_user: str | None = None,
    retry_s: float = 0.0,
) -> None:
    """POST /init: the host's time (envd sets the clock), and optionally token, env, user.

    Right after a restore the first connection may fail; it is retried for `retry_s`."""
    deadline = time.monotonic() + retry_s
    async with EnvdClient(url, token, timeout=10.0, connect_timeout=0.5) as client:
        while True:
            sent = time.monotonic()
            try:
                await client.init(
                    access_token=new_token,
                    env_vars=env_vars,
                    default_user=default_user,
                    timestamp=time.time(),
                )
                break
            except EnvdError as exc:
                if exc.code not in ("unavailable", "deadline_exceeded") or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
        if time.monotonic() - sent > STALE_CLOCK_S:
            # The clock was set to a time taken before a slow round trip (cold TCG code under load):
            # it may be that far behind. Once more with the time alone, now the guest's path is warm.
            await client.init(timestamp=time.time())


# Fallback for VMs booted without /run/wrenn/wrenn-reseed: the same in perl (perl-base is
# Essential in Debian), several times slower under TCG.
_RESEED_PERL = (
    'open(my $f, ">", "/dev/urandom") or die "open: $!"; '
    'syswrite($f, $ARGV[0]) or die "write: $!"; '
    'ioctl($f, 0x5207, 0) or die "RNDRESEEDCRNG: $!";'
)


async def reseed(url: str, token: str) -> None:
    """Give the guest's crng fresh host randomness now (clones share the template's RNG state):
    `wrenn-reseed` writes it to /dev/urandom and forces a reseed (see `reseed.py`)."""
    seed = secrets.token_hex(64)
    async with EnvdClient(url, token, timeout=30.0) as client:
        try:
            result: CommandResult | None = None
            try:
                result = await client.run(reseed_program.GUEST_PATH, [seed], user="root")
            except EnvdError as exc:
                if exc.code in ("unavailable", "unauthenticated", "deadline_exceeded"):
                    raise
            if result is None or result.exit_code in (126, 127):  # no such program in this VM
                result = await client.run("/usr/bin/perl", ["-e", _RESEED_PERL, seed], user="root")
        except EnvdError as exc:
            raise EnvdError(exc.code, f"reseeding the guest RNG failed: {exc.message}") from exc
    if result.exit_code != 0:
        raise EnvdError("internal", f"reseeding the guest RNG failed (exit {result.exit_code})")


async def handover(
    url: str,
    old_token: str,
    *,
    new_token: str,
    env_vars: dict[str, str] | None,
    default_user: str | None,
    retry_s: float,
) -> None:
    """After a clone: reseed the guest's RNG and give envd its new token, env, user and the time.

    The reseed is started with the template's token; once envd has accepted it (the process
    started), `/init` switches the token while the reseed finishes: the two overlap."""
    seed = secrets.token_hex(64)
    deadline = time.monotonic() + retry_s
    exit_code: int | None = None
    async with EnvdClient(url, old_token, timeout=30.0, connect_timeout=0.5) as client:
        while True:
            stream = client.start(reseed_program.GUEST_PATH, [seed], user="root", stdin=False)
            try:
                started: ProcessEvent | None = await anext(stream)
                break
            except EnvdError as exc:
                await stream.aclose()
                if exc.code in ("unavailable", "deadline_exceeded") and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    continue
                if exc.code == "unauthenticated":
                    raise EnvdError(exc.code, f"envd refused the template's token: {exc.message}") from exc
                started = None  # no wrenn-reseed in this VM: perl below
                break
        switch = asyncio.ensure_future(
            init(url, old_token, new_token=new_token, env_vars=env_vars, default_user=default_user,
                 retry_s=retry_s)
        )
        try:
            if started is not None:
                async for event in stream:
                    if isinstance(event, ProcessEnded):
                        exit_code = event.exit_code
        finally:
            await asyncio.gather(switch, return_exceptions=True)
        switch.result()
    if exit_code != 0:
        await reseed(url, new_token)



async def version(url: str, token: str) -> str:
    """envd's version, or "unknown" if it cannot tell."""
    async with EnvdClient(url, token, timeout=5.0) as client:
        return await client.version(default="unknown")
