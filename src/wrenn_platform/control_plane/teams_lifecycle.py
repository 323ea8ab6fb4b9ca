"""What happens around a team when it is deleted or loses a member, in one place.

- `delete_team` (`mark_team_deleted` + commit + revocation): soft delete (the row, its slug and
  every record stay), and in the same transaction the team's capsules go to `stopping`
  (`capsules/team_deleted.py`; the reconciler destroys them). After the commit, the
  sessions scoped to the team are revoked. The team's API keys stop working at once because the
  principal refuses keys of a deleted team (the key rows are kept).
- `remove_member` (remove or leave): the membership row goes with the API keys the user created
  in that team (`delete_member_keys`), then the user's sessions scoped to that team are revoked,
  so neither a session opened before nor a key made before can keep acting in the team.

Users whose default team goes away default to another live team of theirs (or none).
Sessions are revoked through `auth.sessions`, which also invalidates the session cache.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .auth.sessions import revoke_user_sessions
from .capsules.team_deleted import stop_team_capsules
from .db.models import ApiKey, AuthSession, Team, TeamMember, User
from .db.types import utcnow


async def mark_team_deleted(db: AsyncSession, team: Team) -> None:
    """The transactional part of a delete, for callers that commit themselves (e.g. account
    deletion): soft delete, the team's capsules stopped, default teams moved. Sessions are not
    revoked here: do that after the commit (as `delete_team` does)."""
    team.deleted_at = utcnow()
    await stop_team_capsules(db, team.id)
    member_ids = list((await db.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id))).all())
    await _reassign_default_team(db, team.id, member_ids)


async def delete_team(app: FastAPI, db: AsyncSession, team: Team) -> None:
    await mark_team_deleted(db, team)
    await db.commit()
    await _revoke_team_sessions(app, db, team.id)


async def remove_member(app: FastAPI, db: AsyncSession, member: TeamMember) -> None:
    team_id, user_id = member.team_id, member.user_id
    await db.delete(member)
    await delete_member_keys(db, user_id, team_id)
    await db.flush()
    await _reassign_default_team(db, team_id, [user_id])
    await db.commit()
    await _revoke_team_sessions(app, db, team_id, user_id)


async def delete_member_keys(db: AsyncSession, user_id: str, team_id: str | None = None) -> None:
    """Delete the API keys `user_id` created (in `team_id`, or in every team). A key acts as its team,
    but it is the member's: kept, it would outlive their access. Each deletion is audited
    (`api_key` `delete`, by the caller), and the commit invalidates the key cache on every replica."""
    query = delete(ApiKey).where(ApiKey.created_by == user_id)
    if team_id is not None:
        query = query.where(ApiKey.team_id == team_id)
    await db.execute(query)


async def _revoke_team_sessions(app: FastAPI, db: AsyncSession, team_id: str, user_id: str | None = None) -> None:
    query = select(AuthSession.user_id, AuthSession.id).where(
        AuthSession.team_id == team_id, AuthSession.revoked_at.is_(None)
    )
    if user_id is not None:
        query = query.where(AuthSession.user_id == user_id)
    by_user: defaultdict[str, list[str]] = defaultdict(list)
    for owner_id, session_id in (await db.execute(query)).all():
        by_user[owner_id].append(session_id)
    for owner_id, session_ids in by_user.items():
        await revoke_user_sessions(app, db, owner_id, session_ids)


async def _reassign_default_team(db: AsyncSession, team_id: str, user_ids: list[str]) -> None:
    users = await db.scalars(select(User).where(User.id.in_(user_ids), User.default_team_id == team_id))
    for user in users.all():
        user.default_team_id = await db.scalar(
            select(TeamMember.team_id)
            .join(Team, Team.id == TeamMember.team_id)
            .where(TeamMember.user_id == user.id, TeamMember.team_id != team_id, Team.deleted_at.is_(None))
            .order_by((TeamMember.role == "owner").desc(), TeamMember.joined_at)
            .limit(1)
        )
