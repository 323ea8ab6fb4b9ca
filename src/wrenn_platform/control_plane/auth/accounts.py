"""Users and their personal team: creation, and which team a login lands in."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ..db.models import OAuthIdentity, Team, TeamMember, User
from ..db.types import utcnow


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    name: str,
    password_hash: str | None,
    active: bool,
    admin: bool = False,
) -> User:
    """Add a user with a personal team it owns (not committed)."""
    user = User(email=email.lower(), name=name, password_hash=password_hash, is_active=active, is_admin=admin,
                activated_at=utcnow() if active else None)
    team = await create_personal_team(db, user)
    user.default_team_id = team.id
    return user


async def create_personal_team(db: AsyncSession, user: User) -> Team:
    team = Team(name=f"{user.name or user.email.split('@')[0]}'s Team")
    db.add_all([user, team])
    await db.flush()
    db.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
    await db.flush()
    return team


async def login_team(db: AsyncSession, user: User) -> tuple[str, str]:
    """(team id, role) a new session starts in: the default team, else the first one joined.

    A user left without any team gets a new personal one, so a session always has a team.
    """
    rows = (
        await db.execute(
            select(TeamMember.team_id, TeamMember.role)
            .join(Team, Team.id == TeamMember.team_id)
            .where(TeamMember.user_id == user.id, Team.deleted_at.is_(None))
            .order_by(TeamMember.joined_at, TeamMember.team_id)
        )
    ).all()
    for team_id, role in rows:
        if team_id == user.default_team_id:
            return team_id, role
    if rows:
        return rows[0].team_id, rows[0].role
    team = await create_personal_team(db, user)
    user.default_team_id = team.id
    await db.commit()
    return team.id, "owner"


async def providers_of(db: AsyncSession, user_id: str) -> list[str]:
    rows = await db.execute(
        select(OAuthIdentity.provider).where(OAuthIdentity.user_id == user_id).order_by(OAuthIdentity.provider)
    )
    return sorted(set(rows.scalars()))


async def owns_shared_team(db: AsyncSession, user_id: str) -> bool:
    """Whether the user owns a live team that has other members (account deletion is blocked then)."""
    other = aliased(TeamMember)
    other_members = (
        select(func.count())
        .select_from(other)
        .where(other.team_id == Team.id, other.user_id != user_id)
        .correlate(Team)
        .scalar_subquery()
    )
    owned = await db.execute(
        select(Team.id)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.user_id == user_id, TeamMember.role == "owner", Team.deleted_at.is_(None))
        .where(other_members > 0)
        .limit(1)
    )
    return owned.first() is not None
