"""The `wrenn` command: one entry point for every program of the platform.

Each sub-command lives in its own module next to this one; this file only assembles them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="wrenn",
    help="Wrenn: run untrusted code in isolated capsules (microVMs or namespace sandboxes).",
    no_args_is_help=True,
    add_completion=False,
)

# (module, attribute, name). A module exposes either a Typer app (a command group) or a function.
_COMMANDS: list[tuple[str, str, str]] = [
    ("wrenn_platform.cli.server", "server", "server"),
    ("wrenn_platform.cli.agent", "agent", "agent"),
    ("wrenn_platform.cli.envd", "envd", "envd"),
    ("wrenn_platform.cli.admin", "admin_app", "admin"),
    ("wrenn_platform.cli.template", "template_app", "template"),
]

for module_name, attribute, command_name in _COMMANDS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a program not built yet
        if exc.name != module_name:
            raise
        continue
    target = getattr(module, attribute)
    if isinstance(target, typer.Typer):
        app.add_typer(target, name=command_name)
    else:
        app.command(name=command_name)(target)


if __name__ == "__main__":
    app()
