"""`wrenn admin`: platform administration from the command line (same settings as `wrenn server`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from sqlalchemy import select

from wrenn_platform.control_plane import team_limits
from wrenn_platform.control_plane.audit.actor import OPERATOR, acting_as
from wrenn_platform.control_plane.auth.accounts import create_user
from wrenn_platform.control_plane.db.engine import make_engine, make_sessionmaker
from wrenn_platform.control_plane.db.migrate import upgrade
from wrenn_platform.control_plane.db.models import Team, TeamLimit, User
from wrenn_platform.control_plane.db.types import utcnow
from wrenn_platform.control_plane.errors import ApiError, not_found
from wrenn_platform.control_plane.hosts import placement
from wrenn_platform.control_plane.hosts.fleet import set_draining
from wrenn_platform.control_plane.security import hash_password
from wrenn_platform.control_plane.settings import Settings
from wrenn_platform.wire.api.auth import SignupRequest


def _settings(data_dir: Path | None, database_url: str | None) -> Settings:
    """The server's settings, with the command's --data-dir / --database-url where given."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url}
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


admin_app = typer.Typer(help="Platform administration.", no_args_is_help=True)


@admin_app.command("create")
def create(
    email: str = typer.Option(..., "--email", envvar="WRENN_ADMIN_EMAIL", help="Admin's email."),
    password: str = typer.Option(..., "--password", envvar="WRENN_ADMIN_PASSWORD", help="At least 8 characters."),
    name: str = typer.Option("Admin", "--name", help="Display name."),
    data_dir: Path | None = typer.Option(None, "--data-dir", envvar="WRENN_DATA_DIR", help="As for `wrenn server`."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="WRENN_DATABASE_URL", help="As for `wrenn server`."
    ),
) -> None:
    """Create an active platform admin with a personal team (migrates the database first).

    If the email already has an account, it is made an active admin and its password is kept,
    so a container may run this on every start.
    """
    try:
        request = SignupRequest(email=email, password=password, name=name)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise typer.BadParameter(str(error["msg"]), param_hint=f"--{error['loc'][0]}") from None
    settings = _settings(data_dir, database_url)
    message = asyncio.run(_create(settings, request))
    typer.echo(message)


async def _create(settings: Settings, request: SignupRequest) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as db:
            user = (await db.execute(select(User).where(User.email == request.email))).scalar_one_or_none()
            if user is not None:
                if user.deleted_at is not None:
                    raise typer.BadParameter("that account is deleted", param_hint="--email")
                user.is_admin = True
                user.is_active = True
                user.activated_at = user.activated_at or utcnow()
                await db.commit()
                return f"{user.email} already exists ({user.id}); it is an active platform admin"
            user = await create_user(
                db, email=request.email, name=request.name, password_hash=hash_password(request.password),
                active=True, admin=True,
            )
            await db.commit()
            return f"created platform admin {user.email} ({user.id}), team {user.default_team_id}"
    finally:
        await engine.dispose()


@admin_app.command("host-drain")
def host_drain(
    host_id: str = typer.Argument(..., help="The host's id (host-…)."),
    undo: bool = typer.Option(False, "--undo", help="Stop draining: the host takes new capsules again."),
    data_dir: Path | None = typer.Option(None, "--data-dir", envvar="WRENN_DATA_DIR", help="As for `wrenn server`."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="WRENN_DATABASE_URL", help="As for `wrenn server`."
    ),
) -> None:
    """Drain a host: it keeps its capsules (they pause, resume and stop there) but takes no new ones.

    The API contract has no route for this, so it is an operator's command on the database.
    """
    settings = _settings(data_dir, database_url)
    typer.echo(asyncio.run(_drain(settings, host_id, not undo)))


async def _drain(settings: Settings, host_id: str, draining: bool) -> str:
    engine = make_engine(settings.resolved_database_url())
    try:
        async with make_sessionmaker(engine)() as db:
            try:
                with acting_as(OPERATOR):
                    host = await set_draining(db, host_id, draining)
            except ApiError as exc:
                raise typer.BadParameter(exc.message, param_hint="HOST_ID") from None
            return f"host {host.id} is {host.status}"
    finally:
        await engine.dispose()


@admin_app.command("team-placement")
def team_placement(
    team_id: str = typer.Argument(..., help="The team's id (team-…)."),
    require: list[str] | None = typer.Option(
        None, "--require", help="A host tag the team's new capsules require; repeat for several (all are "
                                "required). Replaces the team's tags."),
    clear: bool = typer.Option(False, "--clear", help="Remove the team's tags: its capsules may use any host."),
    data_dir: Path | None = typer.Option(None, "--data-dir", envvar="WRENN_DATA_DIR", help="As for `wrenn server`."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="WRENN_DATABASE_URL", help="As for `wrenn server`."
    ),
) -> None:
    """Show or set the host tags a team's new capsules require (tag hosts with POST /v1/hosts/{id}/tags).

    Without --require or --clear, prints the team's tags. A command on the database: the API has no field for it.
    """
    if require and clear:
        raise typer.BadParameter("give --require or --clear, not both", param_hint="--clear")
    settings = _settings(data_dir, database_url)
    tags = [] if clear else (require or None)
    typer.echo(asyncio.run(_placement(settings, team_id, tags)))


async def _placement(settings: Settings, team_id: str, tags: list[str] | None) -> str:
    engine = make_engine(settings.resolved_database_url())
    try:
        async with make_sessionmaker(engine)() as db:
            try:
                if tags is None:
                    if await db.get(Team, team_id) is None:
                        raise not_found(f"team {team_id} not found")
                    now = await placement.required_tags(db, team_id)
                else:
                    with acting_as(OPERATOR):
                        now = await placement.set_required_tags(db, team_id, tags)
            except ApiError as exc:
                raise typer.BadParameter(exc.message, param_hint="TEAM_ID" if exc.status == 404 else "--require"
                                         ) from None
            if not now:
                return f"team {team_id}: new capsules may go to any host"
            return f"team {team_id}: new capsules go only to hosts tagged {', '.join(now)}"
    finally:
        await engine.dispose()


def _limit_option(name: str, what: str) -> Any:
    return typer.Option(None, f"--{name.replace('_', '-')}", min=0, help=f"{what}; 0 = no limit.")


@admin_app.command("team-limits")
def team_limits_command(
    team_id: str = typer.Argument(..., help="The team's id (team-…)."),
    max_capsules: int | None = _limit_option("max_capsules", "Capsules on hosts at once"),
    max_vcpus: int | None = _limit_option("max_vcpus", "vCPUs of those capsules together"),
    max_memory_mb: int | None = _limit_option("max_memory_mb", "Their memory together (MB)"),
    max_disk_mb: int | None = _limit_option("max_disk_mb", "Their disk together (MB)"),
    max_snapshots: int | None = _limit_option("max_snapshots", "Snapshot templates"),
    api_key_requests_per_second: int | None = _limit_option("api_key_requests_per_second",
                                                            "Requests per second per API key"),
    default: list[str] | None = typer.Option(
        None, "--default", help="Give this limit (e.g. max_capsules) back to the platform default; repeatable."),
    data_dir: Path | None = typer.Option(None, "--data-dir", envvar="WRENN_DATA_DIR", help="As for `wrenn server`."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="WRENN_DATABASE_URL", help="As for `wrenn server`."
    ),
) -> None:
    """Show or set a team's limits (defaults: the WRENN_TEAM_MAX_* settings), with the team's current use.

    A command on the database: the API contract has no route for it yet.
    """
    given = {"max_capsules": max_capsules, "max_vcpus": max_vcpus, "max_memory_mb": max_memory_mb,
             "max_disk_mb": max_disk_mb, "max_snapshots": max_snapshots,
             "api_key_requests_per_second": api_key_requests_per_second}
    changes: dict[str, int | None] = {name: value for name, value in given.items() if value is not None}
    for name in default or []:
        if name not in team_limits.NAMES:
            raise typer.BadParameter(f"{name!r} is not a limit ({', '.join(team_limits.NAMES)})",
                                     param_hint="--default")
        if name in changes:
            raise typer.BadParameter(f"{name} is both set and given back to the default", param_hint="--default")
        changes[name] = None
    typer.echo(asyncio.run(_team_limits(_settings(data_dir, database_url), team_id, changes)))


async def _team_limits(settings: Settings, team_id: str, changes: dict[str, int | None]) -> str:
    engine = make_engine(settings.resolved_database_url())
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as db:
            try:
                if changes:
                    with acting_as(OPERATOR):
                        await team_limits.set_team_limits(db, team_id, changes, settings)
                team = await db.get(Team, team_id)
                if team is None or team.deleted_at is not None:
                    raise not_found(f"team {team_id} not found")
            except ApiError as exc:
                raise typer.BadParameter(exc.message, param_hint="TEAM_ID") from None
            own = await db.get(TeamLimit, team_id)
            limits = team_limits.resolve(own, settings)
            use = await team_limits.team_use(db, team_id)
    finally:
        await engine.dispose()
    used = {"max_capsules": use.capsules, "max_vcpus": use.vcpus, "max_memory_mb": use.memory_mb,
            "max_disk_mb": use.disk_mb, "max_snapshots": use.snapshots}
    lines = [f"team {team_id} ({team.name}):"]
    for name in team_limits.NAMES:
        value = getattr(limits, name)
        source = "team" if own is not None and getattr(own, name) is not None else "default"
        shown = str(value) if value else "no limit"
        in_use = f", in use {used[name]}" if name in used else ""
        lines.append(f"  {name}: {shown} ({source}){in_use}")
    return "\n".join(lines)
