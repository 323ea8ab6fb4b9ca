"""`/v1/teams*`: create, list, get, rename, delete; members add, role change, remove; leave.

Rules (the contract's text): the creator is the owner; get and list members need membership;
rename, add, role change and remove need admin or owner; delete is owner only; the owner's role
cannot be changed and the owner can neither be removed nor leave.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ...wire.api import teams as wire
from ..auth.principal import Principal, require_session
from ..db.models import Team, TeamMember, User
from ..deps import get_db
from ..errors import bad_request, forbidden, not_found, responses
from ..permissions import MANAGERS, MEMBER, OWNER, TeamAccess, UserIdPath, team_access
from ..teams_lifecycle import delete_team, remove_member

router = APIRouter(prefix="/v1/teams", tags=["teams"])


def _team_body(team: Team) -> wire.Team:
    return wire.Team(id=team.id, name=team.name, slug=team.slug, created_at=team.created_at)


async def _members(db: AsyncSession, team_id: str) -> list[wire.TeamMember]:
    rows = await db.execute(
        select(TeamMember, User.email)
        .join(User, User.id == TeamMember.user_id)
        .where(TeamMember.team_id == team_id)
        .order_by(TeamMember.joined_at, User.email)
    )
    return [
        wire.TeamMember.model_validate({"user_id": m.user_id, "email": email, "role": m.role, "joined_at": m.joined_at})
        for m, email in rows.all()
    ]


async def _membership(db: AsyncSession, team_id: str, user_id: str) -> TeamMember:
    member = await db.get(TeamMember, (team_id, user_id))
    if member is None:
        raise not_found("user is not a member of this team")
    return member


@router.get("", response_model=list[wire.TeamWithRole], operation_id="listTeams")
async def list_teams(
    principal: Principal = Depends(require_session), db: AsyncSession = Depends(get_db)
) -> list[wire.TeamWithRole]:
    rows = await db.execute(
        select(Team, TeamMember.role)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.user_id == principal.user_id, Team.deleted_at.is_(None))
        .order_by(Team.created_at, Team.id)
    )
    return [
        wire.TeamWithRole.model_validate({**_team_body(team).model_dump(), "role": role}) for team, role in rows.all()
    ]


@router.post("", status_code=201, response_model=wire.TeamWithRole, operation_id="createTeam",
             responses=responses(400))
async def create_team(
    body: wire.CreateTeamRequest, principal: Principal = Depends(require_session), db: AsyncSession = Depends(get_db)
) -> wire.TeamWithRole:
    team = Team(name=body.name)
    db.add(team)
    await db.flush()
    db.add(TeamMember(team_id=team.id, user_id=principal.user_id, role=OWNER))
    await db.commit()
    return wire.TeamWithRole(**_team_body(team).model_dump(), role=OWNER)


@router.get("/{id}", response_model=wire.TeamDetail, operation_id="getTeam", responses=responses(403, 404))
async def get_team(access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)) -> wire.TeamDetail:
    return wire.TeamDetail(team=_team_body(access.team), members=await _members(db, access.team.id))


@router.patch("/{id}", status_code=204, operation_id="renameTeam", responses=responses(400, 403))
async def rename_team(
    body: wire.RenameTeamRequest, access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)
) -> None:
    access.require(MANAGERS, "admin or owner role required")
    access.team.name = body.name
    await db.commit()


@router.delete("/{id}", status_code=204, operation_id="deleteTeam", responses=responses(403))
async def delete_team_route(
    request: Request, access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)
) -> None:
    access.require(frozenset({OWNER}), "only the owner can delete the team")
    await delete_team(request.app, db, access.team)


@router.get("/{id}/members", response_model=list[wire.TeamMember], operation_id="listTeamMembers")
async def list_members(
    access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)
) -> list[wire.TeamMember]:
    return await _members(db, access.team.id)


@router.post("/{id}/members", status_code=201, response_model=wire.TeamMember, operation_id="addTeamMember",
             responses=responses(403, 404, 400))
async def add_member(
    body: wire.AddTeamMemberRequest, access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)
) -> wire.TeamMember:
    access.require(MANAGERS, "admin or owner role required")
    user = await db.scalar(select(User).where(User.email == body.email, User.deleted_at.is_(None)))
    if user is None:
        raise not_found("no account with that email")
    if await db.get(TeamMember, (access.team.id, user.id)) is not None:
        raise bad_request("user is already a member of this team", code="already_member")
    member = TeamMember(team_id=access.team.id, user_id=user.id, role=MEMBER)
    db.add(member)
    try:
        await db.commit()
    except IntegrityError as exc:  # added by a concurrent request between the check and the insert
        await db.rollback()
        raise bad_request("user is already a member of this team", code="already_member") from exc
    return wire.TeamMember(user_id=user.id, email=user.email, role=MEMBER, joined_at=member.joined_at)


@router.patch("/{id}/members/{uid}", status_code=204, operation_id="updateMemberRole",
              responses=responses(403, 404))
async def update_member_role(
    user_id: UserIdPath,
    body: wire.UpdateMemberRoleRequest,
    access: TeamAccess = Depends(team_access),
    db: AsyncSession = Depends(get_db),
) -> None:
    access.require(MANAGERS, "admin or owner role required")
    member = await _membership(db, access.team.id, user_id)
    if member.role == OWNER:
        raise forbidden("the owner's role cannot be changed")
    member.role = body.role
    await db.commit()


@router.delete("/{id}/members/{uid}", status_code=204, operation_id="removeTeamMember",
               responses=responses(403, 404))
async def remove_team_member(
    request: Request,
    user_id: UserIdPath,
    access: TeamAccess = Depends(team_access),
    db: AsyncSession = Depends(get_db),
) -> None:
    access.require(MANAGERS, "admin or owner role required")
    member = await _membership(db, access.team.id, user_id)
    if member.role == OWNER:
        raise forbidden("the owner cannot be removed from the team")
    await remove_member(request.app, db, member)


@router.post("/{id}/leave", status_code=204, operation_id="leaveTeam", responses=responses(403))
async def leave_team(
    request: Request, access: TeamAccess = Depends(team_access), db: AsyncSession = Depends(get_db)
) -> None:
    if access.role == OWNER:
        raise forbidden("the owner cannot leave the team; delete the team instead")
    await remove_member(request.app, db, await _membership(db, access.team.id, access.user_id))

