"""`python3 -m <envd package>`: run envd in the foreground (as PID 1 inside a capsule).

Options are parsed by hand: argparse (with gettext) is a noticeable import under TCG.
"""

from __future__ import annotations

import os
import sys

from .protocol import PORT
from .server import run

USAGE = """usage: envd [--host ADDR] [--port N] [--access-token TOKEN]
            [--output-buffer BYTES] [--pty-idle-timeout SECONDS]

The access token may also come from WRENN_ENVD_ACCESS_TOKEN; without one, the first /init sets it.
"""

OPTIONS = {
    "--host": ("host", str),
    "--port": ("port", int),
    "--access-token": ("access_token", str),
    "--output-buffer": ("output_buffer", int),
    "--pty-idle-timeout": ("pty_idle_timeout", float),
}


def parse(argv: list[str]) -> dict[str, object]:
    values: dict[str, object] = {
        "host": os.environ.get("WRENN_ENVD_HOST", "0.0.0.0"),
        "port": int(os.environ.get("WRENN_ENVD_PORT", PORT)),
        "access_token": os.environ.get("WRENN_ENVD_ACCESS_TOKEN") or None,
        "output_buffer": 8 * 1024 * 1024,
        "pty_idle_timeout": 600.0,
    }
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        name, sep, value = arg.partition("=")
        if name not in OPTIONS:
            raise SystemExit(f"envd: unknown option {arg!r}\n{USAGE}")
        if not sep:
            if not args:
                raise SystemExit(f"envd: {name} needs a value")
            value = args.pop(0)
        key, kind = OPTIONS[name]
        try:
            values[key] = kind(value)
        except ValueError:
            raise SystemExit(f"envd: bad value for {name}: {value!r}") from None
    return values


def main(argv: list[str] | None = None) -> None:
    opts = parse(sys.argv[1:] if argv is None else argv)
    run(
        str(opts["host"]),
        int(opts["port"]),  # type: ignore[call-overload]
        opts["access_token"],  # type: ignore[arg-type]
        int(opts["output_buffer"]),  # type: ignore[call-overload]
        float(opts["pty_idle_timeout"]),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
