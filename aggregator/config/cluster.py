"""The `cluster` settings section: several replicas of one gateway sharing state through Redis."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class ClusterSettings(BaseModel):
    """Where replicas share rate-limit budgets and revocations; unset `redis_url`: one process, as always."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://[:password@]host:port/db (rediss:// for TLS) shared by every replica; unset: this "
        "process keeps rate limits and revocations to itself. Never logged with its password.",
    )
    key_prefix: str = Field(
        default="mcp-aggregator:",
        pattern=r"^[A-Za-z0-9:._-]{1,64}$",
        description="Prefix of every Redis key and channel, so several gateways can share one Redis.",
    )
    timeout: float = Field(
        default=0.25, gt=0, le=10, description="Seconds one Redis command may take before local state answers."
    )
    retry_interval: float = Field(
        default=1.0, gt=0, description="Seconds between reconnection attempts while Redis is unreachable."
    )
    revocation_check_interval: float = Field(
        default=0.25,
        gt=0,
        description="Seconds between looks at data_dir/revoked.json for revocations made with the CLI, "
        "which are then shared with every replica (keep it well under 1 s).",
    )

    heartbeat_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between this replica's heartbeats in Redis; a replica silent for three intervals is "
        "taken as gone, and the tasks it ran read `failed` on every replica.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @property
    def enabled(self) -> bool:
        """Whether replicas share state (a Redis is configured)."""
        return self.redis_url is not None

    def redis_address(self) -> str:
        """The Redis URL without user or password, for logs and /readyz."""
        if self.redis_url is None:
            return ""
        parts = urlsplit(self.redis_url.get_secret_value())
        host = parts.hostname or ""
        where = f"{host}:{parts.port}" if parts.port else host
        return f"{parts.scheme}://{where}{parts.path}"
