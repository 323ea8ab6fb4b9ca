"""Load generation and CPU accounting for `api_bench.py`'s throughput phase.

The load client is `wrk` (C, one epoll thread, keep-alive connections) driven by `wrk_exec.lua`:
a Python client spends more CPU per request than the server it measures (~4.6 ms vs ~2 ms), so on
two cores it, not the server, set the exec/s. `ensure_wrk` installs the Debian package on first use.

`CpuSplit` says where the CPU went during the phase, in ticks of /proc: the server process (its
threads), the capsules (the server's descendants: envd, bwrap; and apart, the commands envd ran and
reaped, through cutime/cstime), the load client, and the rest of the machine (other engineers' work).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_exec.lua")
HZ = os.sysconf("SC_CLK_TCK")


def ensure_wrk() -> str:
    """The `wrk` binary; installed with apt-get (bench only, not a Wrenn dependency) if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("load client: `wrk` not found; installing the Debian package: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still not on PATH after apt-get install wrk")
    return found


@dataclass
class LoadResult:
    count: int
    errors: int
    rate: float
    p50: float  # ms
    p99: float
    max: float
    client_cpu_s: float  # user + system of the load client
    samples: list[str]


def _run_wrk(url: str, key: str, cids: list[str], clients: int, seconds: float) -> LoadResult:
    argv = [ensure_wrk(), "-t", "1", "-c", str(clients), "-d", f"{seconds:g}s", "--timeout", "30s",
            "-s", str(SCRIPT), url, "--", key, *cids]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output}")
    r = json.loads(lines[-1])
    errors = r["failed_responses"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    samples = list(r["samples"])
    if errors > r["failed_responses"]:
        samples.append(f"socket errors: connect {r['connect']}, read {r['read']}, write {r['write']}, "
                       f"timeout {r['timeout']}")
    return LoadResult(count=r["requests"], errors=errors, rate=r["requests"] / (r["duration_us"] / 1e6),
                      p50=r["p50_us"] / 1000, p99=r["p99_us"] / 1000, max=r["max_us"] / 1000,
                      client_cpu_s=usage.ru_utime + usage.ru_stime, samples=samples)


async def run_wrk(url: str, key: str, cids: list[str], clients: int, seconds: float) -> LoadResult:
    return await asyncio.to_thread(_run_wrk, url, key, cids, clients, seconds)


# ---- CPU split ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    ppid: int
    user: int
    system: int
    children: int  # cutime + cstime: reaped descendants


def _processes() -> dict[int, _Proc]:
    out: dict[int, _Proc] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(name)] = _Proc(int(fields[1]), int(fields[11]), int(fields[12]), int(fields[13]) + int(fields[14]))
    return out


def _machine() -> tuple[int, int, int]:
    """(busy, idle, irq + softirq) ticks of all CPUs."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal, idle + iowait, irq + softirq


def _descendants(table: dict[int, _Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class _Snapshot:
    server_user: int
    server_system: int
    capsules: int  # the processes' own time (envd, bwrap)
    reaped: int  # exited children: the commands envd ran
    machine: tuple[int, int, int]


class CpuSplit:
    """Snapshot before and after a phase; `report` prints cores and ms per exec for each part."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self._start = self._snap()

    def _snap(self) -> _Snapshot:
        table = _processes()
        server = table[self.server_pid]
        tree = _descendants(table, self.server_pid)
        capsules = sum(table[p].user + table[p].system for p in tree)
        reaped = server.children + sum(table[p].children for p in tree)
        return _Snapshot(server.user, server.system, capsules, reaped, _machine())

    def report(self, elapsed_s: float, execs: int, client_name: str, client_cpu_s: float) -> str:
        end = self._snap()
        s, e = self._start, end
        server_user = (e.server_user - s.server_user) / HZ
        server_sys = (e.server_system - s.server_system) / HZ
        capsules = (e.capsules - s.capsules) / HZ
        reaped = (e.reaped - s.reaped) / HZ
        busy = (e.machine[0] - s.machine[0]) / HZ
        idle = (e.machine[1] - s.machine[1]) / HZ
        irq = (e.machine[2] - s.machine[2]) / HZ
        rest = busy - server_user - server_sys - capsules - reaped - client_cpu_s

        def part(name: str, seconds: float) -> str:
            return f"{name} {seconds / elapsed_s:.2f} cores ({seconds / execs * 1000:.2f} ms/exec)"

        return (f"CPU split, {elapsed_s:.0f} s, {os.cpu_count()} cores: "
                + "; ".join([
                    part("server", server_user + server_sys)
                    + f" [user {server_user / execs * 1000:.2f}, sys {server_sys / execs * 1000:.2f}]",
                    part("capsules' envd", capsules),
                    part("commands run (reaped)", reaped),
                    part(f"load client ({client_name})", client_cpu_s),
                    part("rest of the machine", rest),
                    f"idle {idle / elapsed_s:.2f} cores (irq+softirq {irq / elapsed_s:.2f}, within the above)",
                ]))
