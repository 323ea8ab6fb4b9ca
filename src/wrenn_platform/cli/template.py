"""`wrenn template`: build platform templates and list what this host has."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from wrenn_platform.host_agent.images import PLATFORM_RECIPES, BuildError, RichReporter, build_template, prune
from wrenn_platform.host_agent.templates import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    TemplateError,
    TemplateStore,
)

template_app = typer.Typer(
    name="template",
    help="Build platform templates (e.g. `minimal`) and list the templates on this host.",
    no_args_is_help=True,
    add_completion=False,
)


@template_app.command("build")
def build(
    name: str = typer.Argument(..., help=f"Platform template to build: {', '.join(sorted(PLATFORM_RECIPES))}."),
    force: bool = typer.Option(False, "--force", help="Rebuild every layer even if cached (.debs are reused)."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help="Build cache (templates, layers, .debs)."),
) -> None:
    """Build a platform template into the cache; instant when its recipe and envd are unchanged."""
    console = Console(stderr=True)
    if name not in PLATFORM_RECIPES:
        console.print(
            f"[red]error:[/red] unknown platform template {name!r}; known: {', '.join(sorted(PLATFORM_RECIPES))}"
        )
        raise typer.Exit(2)
    try:
        with RichReporter(console) as reporter:
            result = build_template(name, cache_dir, force=force, reporter=reporter)
    except BuildError as exc:
        console.print(f"[red]error:[/red] {exc}")
        if exc.log_path is not None:
            console.print(f"full log: {exc.log_path}")
        raise typer.Exit(1) from None
    info = result.info
    what = (
        "cached"
        if not (result.built_base or result.built_template)
        else ("built (base + envd)" if result.built_base else "built (envd layer; base cached)")
    )
    console.print(
        f"[green]{name}[/green] {what} in {result.seconds:.1f} s: {info.path} "
        f"({info.size_bytes / 1e6:.0f} MB, recipe {info.recipe_hash})"
    )
    typer.echo(str(info.path))


@template_app.command("list")
def list_templates(
    team: str | None = typer.Option(None, "--team", help="Only this team's templates (plus platform ones)."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", help="Data directory of the host agent."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help="Build cache of platform templates."),
) -> None:
    """List platform templates built on this host and team snapshot templates."""
    store = TemplateStore(data_dir=data_dir, cache_dir=cache_dir)
    try:
        templates = store.list(team)
    except TemplateError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table("name", "type", "team", "size", "created", "recipe")
    table.add_column("path", overflow="fold")
    for t in templates:
        table.add_row(
            t.name,
            "platform" if t.platform else t.type,
            t.team_id or "-",
            f"{t.size_bytes / 1e6:.0f} MB",
            t.created_at.replace("T", " ").removesuffix("Z"),
            t.recipe_hash or "-",
            str(t.path),
        )
    Console(width=max(Console().width, 150)).print(table)
    if not templates:
        Console(stderr=True).print("no templates yet: run `wrenn template build minimal`")


@template_app.command("prune")
def prune_builds(
    name: str = typer.Argument("minimal", help="Platform template whose old builds to remove."),
    keep: int = typer.Option(3, "--keep", min=1, help="Newest builds to keep (besides `current`)."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", help="Snapshots here keep their parent build."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help="Build cache of platform templates."),
) -> None:
    """Remove old builds of a platform template (every envd change makes a new one, ~6 MB)."""
    console = Console(stderr=True)
    if name not in PLATFORM_RECIPES:
        console.print(f"[red]error:[/red] unknown platform template {name!r}")
        raise typer.Exit(2)
    store = TemplateStore(data_dir=data_dir, cache_dir=cache_dir)
    parents = [t.parent_dir for t in store.list() if t.parent_dir is not None]
    try:
        removed = prune(name, cache_dir, keep=keep, referenced=parents)
    except BuildError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    for path in removed:
        console.print(f"removed {path}")
    console.print(f"{len(removed)} removed")
