"""Build records: submit (validated, queued), list, get, cancel."""

from __future__ import annotations

from typing import cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.agent_link.constants import PLATFORM_TEMPLATE_NAMES
from wrenn_platform.wire.api.builds import Build, BuildStatus, CreateBuildRequest

from ..auth.principal import Principal
from ..db.models import Team, Template, TemplateBuild
from ..db.types import utcnow
from ..errors import bad_request, conflict, not_found

ACTIVE = ("queued", "running")


def recipe_of(build: TemplateBuild) -> CreateBuildRequest:
    return CreateBuildRequest.model_validate({**build.recipe, "name": build.name,
                                              "base_template": build.base_template, "team_id": build.team_id})


def to_out(build: TemplateBuild) -> Build:
    recipe = recipe_of(build)
    return Build(id=build.id, name=build.name, team_id=build.team_id, base_template=build.base_template,
                 status=cast(BuildStatus, build.status), steps=recipe.steps, files=[f.path for f in recipe.files],
                 start=recipe.start,
                 capsule_id=build.capsule_id, logs=build.logs, error=build.error, created_by=build.created_by,
                 created_at=build.created_at, started_at=build.started_at, finished_at=build.finished_at)


async def submit(db: AsyncSession, admin: Principal, req: CreateBuildRequest) -> TemplateBuild:
    team_id = req.team_id or admin.team_id
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise bad_request(f"team_id: team {team_id} not found")
    if req.name in PLATFORM_TEMPLATE_NAMES:
        raise conflict(f"{req.name!r} is a platform template name", code="already_exists")
    taken = await db.scalar(select(Template.id).where(Template.team_id == team_id, Template.name == req.name))
    building = await db.scalar(select(TemplateBuild.id).where(
        TemplateBuild.team_id == team_id, TemplateBuild.name == req.name, TemplateBuild.status.in_(ACTIVE)))
    if taken or building:
        raise conflict(f"template {req.name!r} already exists or is being built for team {team_id}",
                       code="already_exists")
    recipe = req.model_dump(exclude={"name", "base_template", "team_id"})
    build = TemplateBuild(team_id=team_id, name=req.name, base_template=req.base_template, recipe=recipe,
                          status="queued", created_by=admin.user_id or "system")
    db.add(build)
    await db.commit()
    return build


async def list_builds(db: AsyncSession) -> list[TemplateBuild]:
    rows = await db.execute(select(TemplateBuild).order_by(TemplateBuild.created_at.desc(), TemplateBuild.id))
    return list(rows.scalars().all())


async def get(db: AsyncSession, build_id: str) -> TemplateBuild:
    build = await db.get(TemplateBuild, build_id)
    if build is None:
        raise not_found(f"build {build_id} not found")
    return build


async def cancel(db: AsyncSession, build_id: str) -> None:
    """Queued: it never starts. Running: its runner sees it within a second, stops the step and
    destroys the build capsule. Finished: 409."""
    build = await get(db, build_id)
    result = await db.execute(update(TemplateBuild).where(TemplateBuild.id == build_id,
                                                          TemplateBuild.status.in_(ACTIVE))
                              .values(status="cancelled", finished_at=utcnow(), error="cancelled"))
    await db.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await db.refresh(build)
        raise conflict(f"build {build_id} is {build.status}: only a queued or running build can be cancelled")
