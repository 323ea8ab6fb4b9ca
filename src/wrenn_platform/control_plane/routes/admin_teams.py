"""`/v1/admin/teams*`: list every team, toggle BYOC, delete any team (same soft delete as owners')."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api.admin import AdminTeam, SetTeamBYOCRequest
from ..auth.principal import Principal, require_admin
from ..db.models import Team, TeamMember
from ..deps import get_db
from ..errors import not_found
from ..permissions import IdPath
from ..teams_lifecycle import delete_team

router = APIRouter(prefix="/v1/admin/teams", tags=["admin"])


async def _live_team(db: AsyncSession, team_id: str) -> Team:
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise not_found("team not found")
    return team


@router.get("", response_model=list[AdminTeam], operation_id="adminListTeams")
async def list_teams(_: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db)) -> list[AdminTeam]:
    member_count = (
        select(func.count()).where(TeamMember.team_id == Team.id).correlate(Team).scalar_subquery()
    )
    rows = await db.execute(select(Team, member_count).order_by(Team.created_at, Team.id))
    return [
        AdminTeam(
            id=team.id,
            name=team.name,
            slug=team.slug,
            is_byoc=team.is_byoc,
            created_at=team.created_at,
            deleted_at=team.deleted_at,
            member_count=count,
        )
        for team, count in rows.all()
    ]


@router.put("/{id}/byoc", status_code=204, operation_id="adminSetTeamBYOC")
async def set_team_byoc(
    team_id: IdPath,
    body: SetTeamBYOCRequest,
    _: Principal = Depends(require_admin),
    db: AsyncSession = Depends(get_db),
) -> None:
    team = await _live_team(db, team_id)
    team.is_byoc = body.byoc
    await db.commit()


@router.delete("/{id}", status_code=204, operation_id="adminDeleteTeam")
async def admin_delete_team(
    request: Request, team_id: IdPath, _: Principal = Depends(require_admin), db: AsyncSession = Depends(get_db)
) -> None:
    await delete_team(request.app, db, await _live_team(db, team_id))
