"""`wrenn envd`: run envd, the in-capsule agent, in the foreground (for development and tests)."""

from __future__ import annotations

import typer

from wrenn_platform.wire.envd import PORT


def envd(
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    port: int = typer.Option(PORT, "--port", help="Port to listen on."),
    access_token: str | None = typer.Option(
        None,
        "--access-token",
        envvar="WRENN_ENVD_ACCESS_TOKEN",
        help="Require this X-Access-Token from the start (otherwise the first /init sets it).",
    ),
    pty_idle_timeout: float = typer.Option(
        600.0, "--pty-idle-timeout", help="Seconds before a detached, idle terminal is killed."
    ),
) -> None:
    """Run envd (processes, terminals, files) in the foreground."""
    from wrenn_platform.envd.server import run

    run(host, port, access_token, pty_idle_timeout=pty_idle_timeout)
