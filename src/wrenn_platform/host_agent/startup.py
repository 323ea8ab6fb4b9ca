"""A template's start command and readiness check, run for a new capsule before it is reported running.

The start command runs in the background through envd (as the template's user), its output in
`START_LOG` inside the capsule. The readiness check runs until it passes or its tries run out; a start
command that exits meanwhile ends the wait at once. A failure raises `NotReady` with the check's last
output and the tail of the start command's output: the capsule's failure reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import httpx

from wrenn_platform.host_agent.guest import Guest
from wrenn_platform.wire.agent import AgentError, Empty, ExecRequest, KillRequest
from wrenn_platform.wire.start import ReadyCheck, StartCommand

START_LOG = "/tmp/.wrenn-start.log"
START_TAG = "wrenn-start"
_TAIL = 1500
_STOP_POLLS = 200  # polls 50 ms apart
# `sh -c` script: the start command's output to the log ($0), then the command ($1) in a shell of its own.
_WRAP = 'exec >"$0" 2>&1; exec /bin/sh -c "$1"'


class NotReady(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL else "…" + text[-_TAIL:]


async def start_service(guest: Guest, start: StartCommand, address: str, *, run_command: bool = True) -> None:
    """Run `start` in a new capsule (unless its snapshot restored it running) and wait until ready.

    `address` is where the host reaches the capsule (HTTP readiness probes go there).
    """
    if run_command:
        await _stop_previous(guest)
        try:
            await guest.start_background(ExecRequest(
                cmd="/bin/sh", args=["-c", _WRAP, START_LOG, start.cmd], background=True, tag=START_TAG,
                envs=start.envs, cwd=start.cwd, user=start.user))
        except AgentError as exc:
            raise NotReady(f"the start command could not be started: {exc.message}") from exc
    if start.ready is not None:
        await _wait_ready(guest, start, start.ready, address, watch_process=run_command)


async def _stop_previous(guest: Guest) -> None:
    """A capsule whose template already ran a service (a build on such a template declaring another
    one) stops it first: envd kills the command's whole process group, freeing its ports."""
    if not await _still_running(guest, default=False):
        return
    with contextlib.suppress(AgentError):  # it may exit by itself meanwhile
        await guest.kill_process(KillRequest(selector=START_TAG))
    for _ in range(_STOP_POLLS):
        if not await _still_running(guest, default=False):
            return
        await asyncio.sleep(0.05)
    raise NotReady("the previous start command of this capsule did not stop")


async def _wait_ready(guest: Guest, start: StartCommand, ready: ReadyCheck, address: str,
                      watch_process: bool) -> None:
    last = ""
    # Plain HTTP: without verification httpx skips loading the CA bundle (tens of ms per client).
    async with httpx.AsyncClient(timeout=ready.timeout_sec, trust_env=False, verify=False) as http:
        for attempt in range(ready.retries):
            if attempt:
                await asyncio.sleep(ready.interval_sec)
            if ready.cmd is not None:
                passed, last = await _command_check(guest, start, ready)
            else:
                passed, last = await _http_check(http, address, ready)
            if passed:
                return
            if watch_process and not await _still_running(guest):
                raise NotReady(f"the start command exited before the readiness check {ready.describe()} passed; "
                               f"check: {last}; start command output: {await _start_output(guest, start)}")
    raise NotReady(f"the readiness check {ready.describe()} did not pass in {ready.retries} tries; last: {last}; "
                   f"start command output: {await _start_output(guest, start)}")


async def _command_check(guest: Guest, start: StartCommand, ready: ReadyCheck) -> tuple[bool, str]:
    assert ready.cmd is not None
    result = await guest.run(ExecRequest(cmd="/bin/sh", args=["-c", ready.cmd], envs=start.envs, cwd=start.cwd,
                                         user=start.user, timeout_sec=max(1, math.ceil(ready.timeout_sec))))
    output = _tail(result.stdout + result.stderr)
    if result.timed_out:
        return False, f"timed out after {ready.timeout_sec} s; output: {output}"
    return result.exit_code == 0, f"exit {result.exit_code}; output: {output}"


async def _http_check(http: httpx.AsyncClient, address: str, ready: ReadyCheck) -> tuple[bool, str]:
    url = f"http://{address}:{ready.http_port}{ready.http_path}"
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        return False, f"GET {url}: {type(exc).__name__}: {exc}".rstrip(": ")
    return response.status_code < 400, f"GET {url}: HTTP {response.status_code}: {_tail(response.text)}"


async def _still_running(guest: Guest, default: bool = True) -> bool:
    """Whether the start command runs; `default` when envd cannot tell."""
    with contextlib.suppress(AgentError):
        return any(p.tag == START_TAG for p in (await guest.list_processes(Empty())).processes)
    return default


async def _start_output(guest: Guest, start: StartCommand) -> str:
    try:
        result = await guest.run(ExecRequest(cmd="tail", args=["-c", str(_TAIL), START_LOG], user=start.user,
                                             timeout_sec=5))
    except AgentError as exc:
        return f"(unreadable: {exc.message})"
    return _tail(result.stdout) or "(none)"
