"""A capsule seen as an E2B sandbox: which capsules E2B shows, in which state, in which shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote

from sqlalchemy.ext.asyncio import AsyncSession

from wrenn_platform.wire.envd import VERSION as ENVD_VERSION

from ..auth.principal import Principal
from ..capsules.service import CapsuleService
from ..db.models import Capsule
from ..errors import ApiError, bad_request
from . import models

# E2B's client's default template names → the platform template that stands for each.
TEMPLATE_ALIASES = {"base": "minimal"}
DEFAULT_USER = "user"  # E2B's templates and client assume it
_STATES: dict[str, models.State] = {"starting": "running", "running": "running", "resuming": "running",
                                    "pausing": "paused", "paused": "paused"}
_NO_END = datetime(9999, 12, 31, tzinfo=UTC)


def template_name(template_id: str) -> str:
    name = template_id.removesuffix(":latest")
    return TEMPLATE_ALIASES.get(name, name)


def not_found(sandbox_id: str) -> ApiError:
    return ApiError(404, "not_found", f"sandbox {sandbox_id} not found")


def state(capsule: Capsule) -> models.State | None:
    """The E2B state of a capsule, None when E2B would not show it (stopped, failed)."""
    return _STATES.get(capsule.status)


async def visible(db: AsyncSession, principal: Principal, sandbox_id: str) -> Capsule:
    """The caller's capsule if E2B shows it; another team's is indistinguishable from a missing one."""
    capsule = await db.get(Capsule, sandbox_id)
    if capsule is None or capsule.team_id != principal.team_id or state(capsule) is None:
        raise not_found(sandbox_id)
    return capsule


def end_at(capsule: Capsule) -> datetime:
    """`ends_at`; for a capsule made through the Wrenn API, its next inactivity pause, or no end."""
    if capsule.ends_at is not None:
        return capsule.ends_at
    if capsule.timeout_sec > 0:
        return (capsule.last_active_at or capsule.created_at) + timedelta(seconds=capsule.timeout_sec)
    return _NO_END


def created(capsules: CapsuleService, capsule: Capsule, domain: str | None) -> models.Sandbox:
    return models.Sandbox(template_id=capsule.template, sandbox_id=capsule.id, client_id=capsule.host_id or "local",
                          envd_version=ENVD_VERSION, envd_access_token=capsules.envd_token(capsule.id), domain=domain)


def listed(capsule: Capsule) -> models.ListedSandbox:
    return models.ListedSandbox(**_listed_fields(capsule))


def detail(capsules: CapsuleService, capsule: Capsule, domain: str | None) -> models.SandboxDetail:
    return models.SandboxDetail(**_listed_fields(capsule), envd_access_token=capsules.envd_token(capsule.id),
                                domain=domain)


def _listed_fields(capsule: Capsule) -> dict[str, object]:
    return {
        "template_id": capsule.template, "sandbox_id": capsule.id, "client_id": capsule.host_id or "local",
        "started_at": capsule.started_at or capsule.created_at, "end_at": end_at(capsule),
        "cpu_count": capsule.vcpus, "memory_mb": capsule.memory_mb, "disk_size_mb": capsule.disk_size_mb,
        "state": state(capsule) or "running", "envd_version": ENVD_VERSION,
        "metadata": dict(capsule.labels or {}),
    }


def metadata_filter(raw: str | None) -> dict[str, str]:
    """E2B's `metadata` query: `k=v&k2=v2`, each key and value percent-encoded once more."""
    if not raw:
        return {}
    try:
        return {unquote(k): unquote(v) for k, v in parse_qsl(raw, keep_blank_values=True, strict_parsing=True)}
    except ValueError as exc:
        raise bad_request(f"invalid metadata filter {raw!r}: {exc}") from exc


def state_filter(raw: list[str] | None) -> set[str]:
    wanted = {s.strip() for item in raw or [] for s in item.split(",") if s.strip()}
    unknown = wanted - {"running", "paused"}
    if unknown:
        raise bad_request(f"invalid state {sorted(unknown)[0]!r}: running or paused")
    return wanted or {"running", "paused"}
