"""Tables of the control plane. One class per table; migrations live in `db/migrations/`.

Secrets are never stored in plaintext: passwords are argon2id hashes, session ids, API keys and
single-use tokens are SHA-256 hashes (see `security.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from . import ids
from .base import Base
from .types import UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.USER))
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    default_team_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Set once, when the email is confirmed (or the account is created active): an inactive user
    # with it set was deactivated, and neither signup nor an old link may reactivate them.
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.TEAM))
    name: Mapped[str] = mapped_column(String(128))  # 1-128 chars (contract)
    slug: Mapped[str] = mapped_column(String(13), unique=True, default=ids.new_team_slug)
    is_byoc: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TeamLimit(Base):
    """An admin's override of a team's limits; a NULL column takes the platform default (settings)."""

    __tablename__ = "team_limits"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    max_capsules: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_disk_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_snapshots: Mapped[int | None] = mapped_column(Integer, nullable=True)
    api_key_requests_per_second: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # owner | admin | member
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_team_members_user_id", "user_id"),)


class AuthSession(Base):
    """A browser session. The cookie carries a random sid; only its SHA-256 is stored."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.SESSION))
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str] = mapped_column(String(32))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.API_KEY))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OAuthIdentity(Base):
    __tablename__ = "oauth_identities"

    id: Mapped[str] = mapped_column(
        String(32), primary_key=True, default=lambda: ids.new_id(ids.OAUTH_IDENTITY)
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_user_id: Mapped[str] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("provider", "provider_user_id", name="uq_oauth_provider_user"),)


class OneTimeToken(Base):
    """Single-use tokens (activation, password reset, OAuth state): SHA-256 at rest."""

    __tablename__ = "one_time_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.TOKEN))
    purpose: Mapped[str] = mapped_column(String(32))  # activation | password_reset | oauth_state
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    data: Mapped[str] = mapped_column(String(2048), default="")  # purpose-specific JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# ---- hosts and capsules (issue 5) ---------------------------------------------------------------


class Host(Base):
    """A machine running a host agent. Joins with a one-time registration token (see `HostToken`)."""

    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.HOST))
    type: Mapped[str] = mapped_column(String(16), default="regular")  # regular | byoc
    team_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    availability_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    arch: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cpu_cores: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disk_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|online|offline|draining|unreachable
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The host agent's request-signing key, sealed with the control plane's secret (`hosts/agent_keys.py`).
    agent_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_by: Mapped[str] = mapped_column(String(32), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class HostToken(Base):
    """Registration and refresh tokens of a host: SHA-256 at rest, single use."""

    __tablename__ = "host_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.TOKEN))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # registration | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Capsule(Base):
    """A capsule's record; kept (status `stopped`) after the capsule is destroyed."""

    __tablename__ = "capsules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.CAPSULE))
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    host_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="starting")
    template: Mapped[str] = mapped_column(String(128), default="minimal")
    vcpus: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    disk_size_mb: Mapped[int] = mapped_column(Integer, default=5120)
    timeout_sec: Mapped[int] = mapped_column(Integer, default=0)
    guest_ip: Mapped[str] = mapped_column(String(64), default="")
    host_ip: Mapped[str] = mapped_column(String(64), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # the contract's `metadata`
    error: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An absolute end of life (E2B's sandbox `timeout`), acted on by `e2b/lifetime.py`: at `ends_at`
    # the capsule is destroyed (`on_end` "kill") or paused ("pause"). None: no absolute end.
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    on_end: Mapped[str] = mapped_column(String(8), default="kill")

    __table_args__ = (Index("ix_capsules_team_status", "team_id", "status"), Index("ix_capsules_ends_at", "ends_at"))


class Template(Base):
    """A team's snapshot template (platform templates live on the hosts and are listed from there)."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.TEMPLATE))
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16), default="snapshot")
    host_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source_capsule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_templates_team_name"),)


class UsageSample(Base):
    """What one team had running at one instant; summed into usage and charted as stats."""

    __tablename__ = "usage_samples"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32))
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_s: Mapped[int] = mapped_column(Integer)
    running_count: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # CPU actually used during the interval

    __table_args__ = (Index("ix_usage_samples_team_time", "team_id", "sampled_at"),)


# ---- events, audit log, notification channels (issue 7) -----------------------------------------

_BIGINT_PK = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only


class Event(Base):
    """The outbox: one row per event, written in the transaction of the change it describes.

    `seq` is assigned by the relay (`events/relay.py`) in commit order, gap-free; it is the SSE
    `id` and what `Last-Event-ID` refers to. Rows without `seq` are not yet published.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    team_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)  # the SSEEvent body
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_events_team_seq", "team_id", "seq"),)


class AuditLog(Base):
    """Append-only: no code path updates or deletes a row, and database triggers refuse it."""

    __tablename__ = "audit_logs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.AUDIT))
    team_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_type: Mapped[str] = mapped_column(String(16))  # user | api_key | host | system
    actor_id: Mapped[str] = mapped_column(String(64), default="")
    actor_name: Mapped[str] = mapped_column(String(320), default="")
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(128), default="")
    action: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))  # team | user | platform
    status: Mapped[str] = mapped_column(String(16), default="success")  # success | failure
    metadata_: Mapped[dict[str, object]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_audit_logs_team_time", "team_id", "created_at", "id"),
        Index("ix_audit_logs_time", "created_at", "id"),
    )


class Channel(Base):
    """A team's notification channel. `config` is Fernet ciphertext (`channels/crypto.py`)."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.CHANNEL))
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(16))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    config_encrypted: Mapped[str] = mapped_column(String(8192))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_channels_team_name"),)


class ChannelDelivery(Base):
    """One event to deliver to one channel; created by the relay when the event is published.

    Workers claim due rows with a lease (`lease_until`), so across replicas each attempt runs once.
    """

    __tablename__ = "channel_deliveries"

    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_channel_deliveries_due", "status", "next_attempt_at"),
        Index("ix_channel_deliveries_channel", "channel_id", "id"),
    )


class ChannelDeliveryAttempt(Base):
    """One row per HTTP attempt of a delivery: what the provider answered, or why it failed."""

    __tablename__ = "channel_delivery_attempts"

    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("channel_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(1024), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- host tags and template builds (issue 8) ----------------------------------------------------


class HostTag(Base):
    """A label on a host (`GET/POST /v1/hosts/{id}/tags`); goes with the host."""

    __tablename__ = "host_tags"

    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamPlacementTag(Base):
    """A host tag a team's new capsules require (`wrenn admin team-placement`): they are placed only on
    hosts carrying every one of the team's tags."""

    __tablename__ = "team_placement_tags"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TemplateBuild(Base):
    """An admin's template build: a recipe run in a capsule, snapshotted into `team_id`'s template `name`."""

    __tablename__ = "template_builds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: ids.new_id(ids.BUILD))
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(128))
    base_template: Mapped[str] = mapped_column(String(128), default="minimal")
    recipe: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # steps, files, sizes
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed|cancelled
    capsule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    logs: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(String(1024), default="")
    created_by: Mapped[str] = mapped_column(String(32), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Renewed by the running worker; a `running` build whose lease ran out lost its worker.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
