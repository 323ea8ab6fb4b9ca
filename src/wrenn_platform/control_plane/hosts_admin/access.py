"""Who may see and manage which host (the contract's text).

- Regular hosts: platform admins only.
- BYOC hosts: platform admins, and the team the host belongs to: every member sees it (list, get,
  tags), owners create it and regenerate its token (only while the team has BYOC enabled), owners
  and team admins delete it and change its tags.

The team is the session's team (as for every team route: switch team to act for another one). A
host the caller may not see is a 404, so the answer does not tell that it exists.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..db.models import Host, Team
from ..errors import bad_request, forbidden, not_found
from ..permissions import MANAGERS, OWNER

OWNERS = frozenset({OWNER})


def sees(principal: Principal, host: Host) -> bool:
    if principal.is_admin:
        return True
    return host.type == "byoc" and host.team_id == principal.team_id and principal.role is not None


async def visible_host(db: AsyncSession, principal: Principal, host_id: str) -> Host:
    host = await db.get(Host, host_id)
    if host is None or not sees(principal, host):
        raise not_found(f"host {host_id} not found")
    return host


def require_manage(principal: Principal, host: Host, roles: frozenset[str] = MANAGERS) -> None:
    if principal.is_admin:
        return
    if host.type != "byoc" or host.team_id != principal.team_id or principal.role not in roles:
        raise forbidden("only platform admins, or the owning team's " + " and ".join(sorted(roles)) +
                        " for its BYOC hosts, may do this")


async def require_create(db: AsyncSession, principal: Principal, host_type: str, team_id: str | None) -> None:
    """May the caller add a host of this type (for this team)? 400 for a malformed request, 403 otherwise."""
    if host_type == "regular":
        if team_id is not None:
            raise bad_request("team_id: only BYOC hosts belong to a team")
        if not principal.is_admin:
            raise forbidden("only platform admins may create regular hosts")
        return
    if team_id is None:
        raise bad_request("team_id: required for BYOC hosts")
    if not principal.is_admin and (team_id != principal.team_id or principal.role != OWNER):
        raise forbidden("only platform admins and the team's owner may create its BYOC hosts")
    await require_byoc_team(db, team_id)


async def require_byoc_team(db: AsyncSession, team_id: str) -> Team:
    team = await db.get(Team, team_id)
    if team is None or team.deleted_at is not None:
        raise bad_request(f"team_id: team {team_id} not found")
    if not team.is_byoc:
        raise forbidden(f"BYOC is not enabled for team {team_id}")
    return team
