"""`python3 -m <envd package>`: run envd in the foreground (as PID 1 inside a capsule)."""

from __future__ import annotations

import argparse
import os

from .server import DEFAULT_PORT, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="envd", description="Wrenn's agent inside a capsule.")
    parser.add_argument("--host", default=os.environ.get("WRENN_ENVD_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WRENN_ENVD_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--access-token",
        default=os.environ.get("WRENN_ENVD_ACCESS_TOKEN") or None,
        help="require this token from the start (else from the first /init); "
        "also WRENN_ENVD_ACCESS_TOKEN",
    )
    parser.add_argument("--output-buffer", type=int, default=8 * 1024 * 1024, help="bytes kept per process")
    parser.add_argument("--pty-idle-timeout", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)
    run(args.host, args.port, args.access_token, args.output_buffer, args.pty_idle_timeout)


if __name__ == "__main__":
    main()
