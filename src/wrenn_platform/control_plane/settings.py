"""Every setting of the control plane (and the embedded server), read from `WRENN_*` variables.

The table in docs/configuration.md is the user-facing copy of this file: keep them in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wrenn_platform.wire.warm_pool import PoolKey, pool_sizes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WRENN_", extra="ignore")

    data_dir: Path = Field(Path("/var/lib/wrenn"), description="SQLite database, outbox, agent state.")
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8080, description="Port the API listens on.")
    public_url: str = Field("", description="Base URL users reach the API at (links in emails).")
    database_url: str = Field(
        "", description="SQLAlchemy async URL; empty = SQLite at DATA_DIR/wrenn.db. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db"
    )
    redis_url: str = Field("", description="Redis URL (session cache, cross-replica bus); empty = in-process.")
    secure_cookies: bool = Field(True, description="Set `Secure` on cookies; turn off only for plain-HTTP local use.")
    session_idle_seconds: int = Field(6 * 3600, description="Session idle timeout.")
    session_absolute_seconds: int = Field(24 * 3600, description="Session absolute lifetime.")
    login_attempts_per_minute: int = Field(10, description="Failed logins allowed per email and per IP per minute.")
    activation_ttl_seconds: int = Field(30 * 60, description="Activation link lifetime.")
    signup_cooldown_seconds: int = Field(60, description="Minimum time between activation emails to one address.")
    password_reset_ttl_seconds: int = Field(15 * 60, description="Password reset link lifetime.")
    session_cache_seconds: int = Field(
        30, description="How long a session lookup stays in the Redis session cache (revocation clears it at once)."
    )
    api_key_cache_seconds: int = Field(
        5, description="How long an API-key lookup stays in a replica's memory (bound for other replicas missing "
        "a bus message; deletions on a replica hold there at once)."
    )
    oauth_state_ttl_seconds: int = Field(10 * 60, description="How long an OAuth login or connect may take.")
    redis_prefix: str = Field("wrenn:", description="Prefix of every Redis key and channel (share one Redis safely).")
    trust_proxy_headers: bool = Field(
        False, description="Take the client IP from X-Forwarded-For (only behind a trusted reverse proxy)."
    )

    smtp_host: str = Field("", description="SMTP server; empty = write emails to DATA_DIR/outbox/*.eml.")
    smtp_port: int = Field(587, description="SMTP port.")
    smtp_username: str = Field("", description="SMTP user name.")
    smtp_password: str = Field("", description="SMTP password.")
    smtp_starttls: bool = Field(True, description="Use STARTTLS when the server offers it.")
    mail_from: str = Field("Wrenn <no-reply@localhost>", description="From address of outgoing mail.")

    github_client_id: str = Field("", description="GitHub OAuth app client id; empty disables GitHub login.")
    github_client_secret: str = Field("", description="GitHub OAuth app client secret.")
    github_authorize_url: str = Field("https://github.com/login/oauth/authorize", description="OAuth authorize URL.")
    github_token_url: str = Field("https://github.com/login/oauth/access_token", description="OAuth token URL.")
    github_api_url: str = Field("https://api.github.com", description="GitHub API base URL.")
    oauth_redirect_url: str = Field("", description="SPA base URL the OAuth callback redirects to.")

    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Largest multipart file upload (413 above).")
    max_request_bytes: int = Field(1024 * 1024, description="Largest JSON request body (413 above).")
    runtime: Literal["auto", "namespace", "microvm"] = Field("auto", description="Capsule runtime of the local agent.")
    embedded_agent: bool = Field(True, description="Run a host agent inside `wrenn server`.")
    warm_pool_size: int = Field(4, ge=0, description="Capsules the embedded agent keeps started for the default "
                                "create request (template minimal, 1 vCPU, 512 MB, 5120 MB disk); 0: no pool.")
    warm_pools: str = Field("", description="More warm pools of the embedded agent: "
                            "`template:vcpus:memory_mb:disk_size_mb=N`, comma separated.")
    warm_pool_max_load: float = Field(4.0, gt=0, description="The warm pool refills only while the host's "
                                      "1-minute load average per core is at most this.")
    cache_dir: Path = Field(Path("/var/cache/wrenn"), description="Built platform templates (the embedded agent's "
                            "template cache).")
    secret_key: str = Field("", description="Key for signing and encrypting; empty = generated into DATA_DIR.")
    host_heartbeat_seconds: float = Field(5.0, description="How often a host agent heartbeats.")
    host_offline_after_seconds: float = Field(30.0, description="A host without a heartbeat this long gets no "
                                              "new capsules and is marked unreachable.")
    host_lost_after_seconds: float = Field(120.0, description="A host without a heartbeat this long is marked "
                                           "offline and its capsules missing (reconciled when it returns).")
    reconcile_interval_seconds: float = Field(5.0, description="How often capsule records are checked against "
                                              "what the hosts report.")
    usage_sample_seconds: int = Field(60, description="Interval of the usage samples behind stats and usage.")
    team_max_capsules: int = Field(20, ge=0, description="Default team limit: capsules on hosts at once "
                                   "(running, paused, in transition); 0 = no limit. Per team: "
                                   "`wrenn admin team-limits`.")
    team_max_vcpus: int = Field(64, ge=0, description="Default team limit: vCPUs of those capsules together; "
                                "0 = no limit.")
    team_max_memory_mb: int = Field(64 * 1024, ge=0, description="Default team limit: their memory (MB) together; "
                                    "0 = no limit.")
    team_max_disk_mb: int = Field(500 * 1024, ge=0, description="Default team limit: their disk (MB) together; "
                                  "0 = no limit.")
    team_max_snapshots: int = Field(100, ge=0, description="Default team limit: snapshot templates; 0 = no limit.")
    api_key_requests_per_second: int = Field(1000, ge=0, description="Requests per second one API key may make "
                                             "(429 above); 0 = no limit. Per team: `wrenn admin team-limits`.")
    capsule_min_timeout_sec: int = Field(60, description="Positive capsule `timeout_sec` below this is clamped up.")
    lifecycle_settle_seconds: float = Field(2.0, ge=0, description="How long pause, resume and destroy wait for "
                                            "the operation to finish before answering (the answer shows the "
                                            "settled status; past it, the transient one).")
    build_poll_seconds: float = Field(2.0, description="How often the template build worker looks for builds "
                                      "queued through another replica.")

    proxy_domain: str = Field("", description="Domain of capsule port URLs `{port}-{capsule_id}.DOMAIN` (a port "
                              "in it is ignored); empty = the public URL's host, `localhost` when that is an IP.")
    proxy_resume_timeout_seconds: float = Field(30.0, description="Longest a request to a paused capsule's port "
                                                "waits for the capsule to resume (then 504).")

    events_keepalive_seconds: float = Field(30.0, description="Interval of the `: keepalive` comment on SSE streams.")
    events_poll_seconds: float = Field(1.0, description="How often the event relay and SSE hubs look at the outbox "
                                       "when no bus message woke them.")
    events_client_queue: int = Field(1000, description="Events buffered per SSE client; a client that falls this "
                                     "far behind is disconnected (it resumes with Last-Event-ID).")
    events_replay_limit: int = Field(1000, description="Most events replayed to a client reconnecting with "
                                     "Last-Event-ID.")
    events_replay_window_seconds: int = Field(3600, description="Oldest event replayed on reconnect.")
    channel_timeout_seconds: float = Field(10.0, description="Timeout of one notification delivery request.")
    channel_allow_private_destinations: bool = Field(
        False, description="Let notification channels reach loopback, private and link-local addresses "
        "(off: such deliveries are refused, so a tenant's channel cannot probe the internal network)."
    )
    channel_max_attempts: int = Field(8, description="Delivery attempts per event and channel before giving up.")
    channel_backoff_seconds: float = Field(2.0, description="First retry delay; doubles with each attempt.")
    channel_backoff_max_seconds: float = Field(600.0, description="Longest delay between two attempts.")
    channel_discord_url: str = Field("https://discord.com/api/webhooks/",
                                     description="Prefix a Discord webhook_url must have.")
    channel_slack_url: str = Field("https://hooks.slack.com/", description="Prefix a Slack webhook_url must have.")
    channel_teams_url: str = Field("https://", description="Prefix a Microsoft Teams webhook_url must have.")
    channel_googlechat_url: str = Field("https://chat.googleapis.com/",
                                        description="Prefix a Google Chat webhook_url must have.")
    channel_telegram_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL.")

    @field_validator("warm_pools")
    @classmethod
    def _readable_warm_pools(cls, value: str) -> str:
        pool_sizes(0, value)  # raises PoolSpecError (a ValueError) naming what is wrong
        return value

    def warm_pool_sizes(self) -> dict[PoolKey, int]:
        return pool_sizes(self.warm_pool_size, self.warm_pools)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'wrenn.db'}"
