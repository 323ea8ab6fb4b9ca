"""The few envd calls the runtime itself makes: wait for `/health`, `/init`, and one command.

After every restore the guest's clock is where it was at the snapshot and (after a clone) its RNG
state is the template's: `/init` carries the host's time (envd sets the clock) and a short
command mixes host randomness into `/dev/urandom`. Fresh connections each time: after a clone the
host's old sockets to that address go silent rather than reset.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import time
from datetime import UTC, datetime
from typing import Any

import httpx

ENVD_PORT = 49983


class EnvdUnavailable(Exception):
    pass


def envd_url(host_ip: str) -> str:
    return f"http://{host_ip}:{ENVD_PORT}"


async def wait_healthy(url: str, limit_s: float, alive: Any = None) -> None:
    """Poll `/health` until it answers; `alive()` returning False aborts early (VM died)."""
    deadline = time.monotonic() + limit_s
    last: Exception | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(1.0, connect=0.5)) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise EnvdUnavailable("the VM exited before envd answered")
            try:
                r = await client.get(f"{url}/health")
                if r.status_code < 500:
                    return
            except httpx.HTTPError as exc:
                last = exc
            await asyncio.sleep(0.02)
    raise EnvdUnavailable(f"envd at {url} did not answer within {limit_s:.0f} s ({last})")


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def init(
    url: str,
    token: str,
    *,
    new_token: str | None = None,
    env_vars: dict[str, str] | None = None,
    default_user: str | None = None,
    retry_s: float = 0.0,
) -> None:
    """POST /init: the host's time (envd sets the clock), and optionally token, env, user."""
    body: dict[str, Any] = {"timestamp": _timestamp()}
    if new_token:
        body["accessToken"] = new_token
    if env_vars:
        body["envVars"] = env_vars
    if default_user:
        body["defaultUser"] = default_user
    deadline = time.monotonic() + retry_s
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=0.5)) as client:
        while True:
            try:
                r = await client.post(f"{url}/init", json=body, headers={"X-Access-Token": token})
                break
            except httpx.TransportError as exc:
                # Right after a restore the first connection may fail: retry within retry_s.
                if time.monotonic() > deadline:
                    raise EnvdUnavailable(f"envd at {url} did not answer: {exc}") from exc
                await asyncio.sleep(0.01)
    if r.status_code >= 300:
        raise EnvdUnavailable(f"envd /init: {r.status_code} {r.text[:200]}")


async def run(url: str, token: str, cmd: str, args: list[str], limit_s: float = 30.0) -> tuple[int, bytes]:
    """Run one command as root through envd's Connect `process.Process/Start`; (exit code, stdout)."""
    message = {"process": {"cmd": cmd, "args": args, "envs": {}}, "stdin": False}
    data = json.dumps(message).encode()
    body = struct.pack(">BI", 0, len(data)) + data
    headers = {
        "Content-Type": "application/connect+json",
        "Connect-Protocol-Version": "1",
        "X-Access-Token": token,
        "Authorization": "Basic " + base64.b64encode(b"root:").decode(),
    }
    out = bytearray()
    exit_code: int | None = None
    async with (
        httpx.AsyncClient(timeout=limit_s) as client,
        client.stream("POST", f"{url}/process.Process/Start", content=body, headers=headers) as r,
    ):
        buf = b""
        async for chunk in r.aiter_bytes():
            buf += chunk
            while len(buf) >= 5:
                flags, length = struct.unpack(">BI", buf[:5])
                if len(buf) < 5 + length:
                    break
                msg = json.loads(buf[5 : 5 + length] or b"{}")
                buf = buf[5 + length :]
                if flags & 0x02:
                    if msg.get("error"):
                        raise EnvdUnavailable(f"envd: {msg['error']}")
                    continue
                event = msg.get("event", {})
                if "data" in event and "stdout" in event["data"]:
                    out += base64.b64decode(event["data"]["stdout"])
                if "end" in event:
                    exit_code = int(event["end"].get("exitCode", event["end"].get("exit_code", 0)))
    if exit_code is None:
        raise EnvdUnavailable(f"envd: {cmd} ended without an exit status")
    return exit_code, bytes(out)


async def reseed(url: str, token: str) -> None:
    """Mix fresh host randomness into the guest's pool (clones share the template's RNG state)."""
    code, _ = await run(url, token, "/bin/sh", ["-c", 'printf %s "$1" > /dev/urandom', "sh", secrets.token_hex(64)])
    if code != 0:
        raise EnvdUnavailable(f"reseeding the guest RNG failed (exit {code})")


async def version(url: str, token: str) -> str:
    async with httpx.AsyncClient(timeout=5.0) as client:
        r = await client.get(f"{url}/version", headers={"X-Access-Token": token})
    if r.status_code != 200:
        return "unknown"
    return str(r.json().get("version", "unknown"))
