"""Where an upstream stands, and how patient the gateway is with it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class UpstreamState(StrEnum):
    """Where an upstream's connection stands."""

    CONNECTING = "connecting"
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # connected, but slow (a probe took over half the timeout)
    UNHEALTHY = "unhealthy"
    AUTH_EXPIRED = "auth-expired"  # refused our credential (HTTP 401/403)
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Timings:
    """How patient the gateway is with upstreams (from `Settings`)."""

    connect_timeout: float
    health_interval: float
    backoff_initial: float
    backoff_max: float
    circuit_failures: int = 5
    circuit_cooldown: float = 10.0
    max_result_bytes: int = 8 * 1024 * 1024
