"""The host join flow over the database: pending host + registration token, register, refresh,
heartbeat. Tokens are single use and hashed at rest (`security.sha256_hex`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.agent_link.auth import key_from_registration_token

from ..db.models import Host, HostToken
from ..db.types import utcnow
from ..errors import ApiError
from ..security import new_token, sha256_hex
from ..settings import Settings
from . import agent_keys, tokens


def _invalid(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


async def create_pending_host(db: AsyncSession, created_by: str = "system", host_type: str = "regular",
                              team_id: str | None = None) -> tuple[Host, str]:
    """A host waiting to join, and its one-time registration token (plaintext returned once)."""
    host = Host(type=host_type, team_id=team_id, status="pending", created_by=created_by)
    db.add(host)
    await db.flush()
    return host, await issue_registration_token(db, host)


async def issue_registration_token(db: AsyncSession, host: Host) -> str:
    """A new one-time registration token for `host` (earlier unused ones are voided); commits."""
    now = utcnow()
    await db.execute(update(HostToken).where(HostToken.host_id == host.id, HostToken.kind == "registration",
                                             HostToken.used_at.is_(None)).values(used_at=now))
    token = new_token()
    db.add(HostToken(host_id=host.id, kind="registration", token_hash=sha256_hex(token),
                     created_at=now, expires_at=now + tokens.REGISTRATION_TTL))
    await db.commit()
    await db.refresh(host)
    return token


async def _consume(db: AsyncSession, kind: str, token: str) -> HostToken | None:
    now = utcnow()
    row = (await db.execute(select(HostToken).where(HostToken.token_hash == sha256_hex(token),
                                                    HostToken.kind == kind))).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    # Conditional update: of two concurrent uses of one token only one wins.
    result = await db.execute(update(HostToken).where(HostToken.id == row.id, HostToken.used_at.is_(None))
                              .values(used_at=now))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return row


async def _issue(db: AsyncSession, settings: Settings, host: Host) -> tuple[str, str]:
    refresh = new_token()
    db.add(HostToken(host_id=host.id, kind="refresh", token_hash=sha256_hex(refresh),
                     expires_at=utcnow() + tokens.REFRESH_TTL))
    await db.commit()
    await db.refresh(host)
    return tokens.issue_host_jwt(settings, host.id), refresh


async def register(db: AsyncSession, settings: Settings, token: str, *, address: str, arch: str | None,
                   cpu_cores: int | None, memory_mb: int | None, disk_gb: int | None) -> tuple[Host, str, str]:
    used = await _consume(db, "registration", token)
    if used is None:
        raise _invalid("invalid or expired registration token")
    host = await db.get(Host, used.host_id)
    if host is None:
        raise _invalid("invalid or expired registration token")
    host.address, host.arch, host.cpu_cores, host.memory_mb, host.disk_gb = address, arch, cpu_cores, memory_mb, disk_gb
    host.status = "online"
    host.last_heartbeat_at = utcnow()
    host.agent_key = agent_keys.seal(settings, host.id, key_from_registration_token(token))
    jwt_, refresh = await _issue(db, settings, host)
    return host, jwt_, refresh


async def refresh(db: AsyncSession, settings: Settings, token: str) -> tuple[Host, str, str]:
    used = await _consume(db, "refresh", token)
    host = await db.get(Host, used.host_id) if used is not None else None
    if host is None:
        raise _invalid("invalid, expired or revoked refresh token")
    jwt_, new_refresh = await _issue(db, settings, host)
    return host, jwt_, new_refresh
