"""Who may act on a team: the session's team, the caller's role in it, and the role rules.

Every `/v1/teams/{id}*` route works on the team the session is scoped to (the contract: the id
"must match" the session's team; switch team first). Another id answers 403 before any lookup,
so the answer says nothing about whether that team exists. The role comes from the database on
every request (`Principal.role`), so a membership change takes effect on the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy.ext.asyncio import AsyncSession

from .auth.principal import Principal, require_session
from .db.models import Team
from .deps import get_db
from .errors import forbidden, not_found

# Ids are generated as `<prefix>-<hex>`; anything outside this alphabet is bad input (400).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
IdPath = Annotated[str, Path(alias="id", pattern=ID_PATTERN)]
UserIdPath = Annotated[str, Path(alias="uid", pattern=ID_PATTERN, description="Target user ID")]

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"
MANAGERS = frozenset({OWNER, ADMIN})


@dataclass(frozen=True)
class TeamAccess:
    team: Team
    role: str
    principal: Principal

    @property
    def user_id(self) -> str:
        return self.principal.user_id or ""

    def require(self, roles: frozenset[str], message: str) -> None:
        if self.role not in roles:
            raise forbidden(message)


async def session_team(principal: Principal, db: AsyncSession) -> TeamAccess:
    """The session's current team and the caller's role in it (403 if no longer a member)."""
    team = await db.get(Team, principal.team_id)
    if team is None or team.deleted_at is not None:
        raise not_found("team not found")
    if principal.role is None:
        raise forbidden("not a member of this team")
    return TeamAccess(team=team, role=principal.role, principal=principal)


async def team_access(
    team_id: IdPath,
    principal: Principal = Depends(require_session),
    db: AsyncSession = Depends(get_db),
) -> TeamAccess:
    if team_id != principal.team_id:
        raise forbidden("the session is scoped to another team; switch team first")
    return await session_team(principal, db)


async def session_team_access(
    principal: Principal = Depends(require_session), db: AsyncSession = Depends(get_db)
) -> TeamAccess:
    return await session_team(principal, db)
