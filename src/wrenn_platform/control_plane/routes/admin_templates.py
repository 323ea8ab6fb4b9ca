"""`/v1/admin/templates*`: every template — the platform's (from the hosts) and every team's
snapshots — and deletion of a team's snapshot template.

Platform templates (`platform: true`, e.g. `minimal`) are shared by every team: they are rebuilt
with `wrenn template build`, never deleted here (403). A team template is deleted exactly as its
team would delete it (`capsules/snapshots.remove`). Names are unique per team, not
across teams: the list carries each one's team in `metadata.team_id`, and a name held by several
teams is given as `<team_id>:<name>` (a `:` is in neither).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.agent_link.constants import PLATFORM_TEMPLATE_NAMES
from wrenn_platform.wire.api.capsules import Template

from ..auth.principal import Principal, require_admin
from ..capsules import snapshots
from ..capsules.lifespan import get_capsules
from ..capsules.service import CapsuleService
from ..db.models import Template as TemplateRow
from ..deps import get_db
from ..errors import conflict, forbidden, not_found

router = APIRouter(prefix="/v1/admin/templates", tags=["admin"])


def _with_team(row: TemplateRow) -> Template:
    out = snapshots.template_out(row)
    out.metadata = {**(out.metadata or {}), "team_id": row.team_id}
    return out


@router.get("", operation_id="adminListTemplates")
async def list_templates(_: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db),
                         svc: CapsuleService = Depends(get_capsules)) -> list[Template]:
    rows = (await db.execute(select(TemplateRow).order_by(TemplateRow.created_at, TemplateRow.id))).scalars().all()
    return [*await snapshots.platform_templates(svc), *(_with_team(r) for r in rows)]


async def _team_of(db: AsyncSession, svc: CapsuleService, ref: str) -> tuple[str, str]:
    """(team id, template name) that `name` or `team_id:name` designates."""
    team_id, sep, name = ref.rpartition(":")
    platform = PLATFORM_TEMPLATE_NAMES | {t.name for t in await snapshots.platform_templates(svc)}
    if not sep and name in platform:
        raise forbidden(f"{name!r} is a platform template: rebuild it with `wrenn template build`, it cannot be "
                        "deleted")
    stmt = select(TemplateRow.team_id).where(TemplateRow.name == name)
    if sep:
        stmt = stmt.where(TemplateRow.team_id == team_id)
    teams = sorted((await db.execute(stmt)).scalars().all())
    if not teams:
        raise not_found(f"template {ref!r} not found")
    if len(teams) > 1:
        raise conflict(f"template {name!r} exists in teams {', '.join(teams)}: delete it as <team_id>:{name}")
    return teams[0], name


@router.delete("/{name}", status_code=204, response_class=Response, operation_id="adminDeleteTemplate")
async def delete_template(name: str, admin: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db),
                          svc: CapsuleService = Depends(get_capsules)) -> Response:
    team_id, template = await _team_of(db, svc, name)
    await snapshots.remove(svc, db, team_id, template)
    return Response(status_code=204)
