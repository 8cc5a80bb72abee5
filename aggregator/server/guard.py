"""What every downstream request shares: the policy, the rate and concurrency limits, the audit log, the metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import Principal
from aggregator.policy.ratelimit import ConcurrencyLimiter, RateLimiter
from aggregator.policy.reload import PolicyHolder
from aggregator.server.metrics import Metrics
from aggregator.tracing import Tracing


@dataclass(frozen=True, slots=True)
class Guard:
    """The policy, the rate limiter and the audit log (and the metrics), shared by every request."""

    policy: PolicyHolder
    limiter: RateLimiter
    audit: AuditLog
    principal_slots: ConcurrencyLimiter
    upstream_slots: ConcurrencyLimiter
    max_argument_bytes: int
    metrics: Metrics | None = None
    after_call: Callable[[Principal, str], None] | None = None
    """Told of every successful `tools/call` (principal, exported name), on every path: the finder learns from it."""
    tracing: Tracing | None = None
    """Spans for each request and upstream call (`OTEL_*` settings); None: tracing is off."""
