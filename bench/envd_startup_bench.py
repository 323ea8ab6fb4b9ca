"""envd's start-up and idle memory inside the `minimal` template, with the guest's own python3.

    .venv/bin/python bench/envd_startup_bench.py [--runs 20] [--source DIR] [--python-flags=-S]
                                                 [--compare DIR --compare-flags=-s]

Each run starts `python3 FLAGS -m wrenn_envd` in bubblewrap over the built template's rootfs
(read-only; a copy of the envd source, byte-compiled by the guest's python3 as `wrenn template
build` does, bind-mounted at /opt/wrenn_envd; host network, loopback port) and
times spawn → first `204` from `/health`; then sends `/init` (as the runtime does) and starts `true`
(`process.Process/Start`, read to the end of the stream), timing spawn → that first command's end;
then waits 2 s (envd settles its memory 1 s after its first answer) and reads envd's
/proc/<pid>/smaps_rollup. With `--compare`, runs of the other source (e.g. an older
checkout: `git archive <rev> src/wrenn_platform/envd | tar -x -C /tmp/old`) alternate with
these in batches of 5, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from wrenn_platform.host_agent.images import build_template

SOURCE = Path(__file__).resolve().parents[1] / "src" / "wrenn_platform" / "envd"
INIT = b'{"envVars":{"A":"1"}}'
START_TRUE = b'{"process":{"cmd":"true"}}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(head)
        return c.recv(100)


def healthy(port: int) -> bool:
    try:
        return request(port, b"GET /health HTTP/1.1\r\nHost: envd\r\n\r\n").startswith(b"HTTP/1.1 204")
    except OSError:
        return False


def first_exec(port: int) -> None:
    body = struct.pack(">BI", 0, len(START_TRUE)) + START_TRUE
    head = b"POST /process.Process/Start HTTP/1.1\r\nHost: envd\r\nConnection: close\r\n"
    head += b"Content-Type: application/connect+json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(head + body)
        answer = b""
        while data := c.recv(65536):
            answer += data
    assert b'"exitCode":0' in answer, answer


def smaps(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def compiled_copy(rootfs: Path, source: Path, into: Path) -> Path:
    """`source` copied under `into` and byte-compiled by the guest's python3 (as in a template)."""
    copy = into / "wrenn_envd"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        ["bwrap", "--ro-bind", str(rootfs), "/", "--tmpfs", "/opt", "--bind", str(copy), "/opt/wrenn_envd",
         "--proc", "/proc", "--dev", "/dev", "/usr/bin/python3", "-m", "compileall", "-q", "/opt/wrenn_envd"],
        check=True,
    )  # fmt: skip
    return copy


def one(rootfs: Path, source: Path, flags: list[str]) -> tuple[float, float, dict[str, float]]:
    port = free_port()
    argv = [
        "bwrap", "--ro-bind", str(rootfs), "/", "--tmpfs", "/opt", "--ro-bind", str(source),
        "/opt/wrenn_envd", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--setenv", "PYTHONPATH", "/opt", "--die-with-parent",
        "/usr/bin/python3", *flags, "-m", "wrenn_envd", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    t0 = time.perf_counter()
    popen = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        while not healthy(port):
            if popen.poll() is not None:
                raise RuntimeError(f"envd exited with {popen.returncode}")
            time.sleep(0.001)
        elapsed = (time.perf_counter() - t0) * 1000
        head = b"POST /init HTTP/1.1\r\nHost: envd\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(INIT) + INIT
        assert request(port, head).startswith(b"HTTP/1.1 204"), "/init failed"
        first_exec(port)
        to_exec = (time.perf_counter() - t0) * 1000
        time.sleep(2.0)
        with open(f"/proc/{popen.pid}/task/{popen.pid}/children") as f:
            children = f.read().split()
        return elapsed, to_exec, smaps(int(children[0]) if children else popen.pid)
    finally:
        popen.terminate()
        popen.wait()


def report(name: str, results: list[tuple[float, float, dict[str, float]]]) -> None:
    print(f"{name}: n={len(results)}")
    for label, times in (
        ("spawn → /health", sorted(r[0] for r in results)),
        ("spawn → 1st exec end", sorted(r[1] for r in results)),
    ):
        median = statistics.median(times)
        print(f"  {label:<20} min {times[0]:6.1f}  median {median:6.1f}  max {times[-1]:6.1f} ms")
    for key in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
        print(f"  {key:<19} median {statistics.median(m[key] for _, _, m in results):6.2f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--python-flags", default="-S")
    parser.add_argument("--compare", type=Path, help="another envd source directory")
    parser.add_argument("--compare-flags", default="-s")
    args = parser.parse_args()
    rootfs = build_template("minimal").info.path / "rootfs"
    print(f"template rootfs {rootfs}, load average {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="envd-startup-"))
    source = compiled_copy(rootfs, args.source, work / "this")
    configs = [("this envd " + args.python_flags, source, args.python_flags.split())]
    if args.compare:
        other = compiled_copy(rootfs, args.compare, work / "other")
        configs.append((f"{args.compare} {args.compare_flags}", other, args.compare_flags.split()))
    results: dict[str, list[tuple[float, float, dict[str, float]]]] = {name: [] for name, _, _ in configs}
    done = 0
    while done < args.runs:
        batch = min(5, args.runs - done)
        for name, source, flags in configs:
            results[name] += [one(rootfs, source, flags) for _ in range(batch)]
        done += batch
    for name, values in results.items():
        report(name, values)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
