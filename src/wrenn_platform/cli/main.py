"""The `wrenn` command: one entry point for every program of the platform.

Each sub-command lives in its own module next to this one; this file only assembles them.
"""

from __future__ import annotations

import typer

from .admin import admin_app
from .agent import agent
from .envd import envd
from .server import server
from .template import template_app

app = typer.Typer(
    name="wrenn",
    help="Wrenn: run untrusted code in isolated capsules (microVMs or namespace sandboxes).",
    no_args_is_help=True,
    add_completion=False,
)

app.command(name="server")(server)
app.command(name="agent")(agent)
app.command(name="envd")(envd)
app.add_typer(admin_app, name="admin")
app.add_typer(template_app, name="template")


if __name__ == "__main__":
    app()
