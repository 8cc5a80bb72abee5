"""What every downstream request shares: the policy, the rate and concurrency limits, the audit log, the metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from aggregator.errors import LimitExceededError
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

    def check_arguments(self, name: str, arguments: dict[str, Any] | None) -> None:
        """Refuse a call of `name` whose arguments pass `limits.max_argument_bytes` (as compact JSON)."""
        size = len(json.dumps(arguments or {}, separators=(",", ":")))
        if size > self.max_argument_bytes:
            raise LimitExceededError(
                f"The arguments of '{name}' are {size} bytes; the limit is {self.max_argument_bytes}."
            )

    @contextmanager
    def call_slots(self, principal: Principal, upstream: str) -> Iterator[Callable[[], None]]:
        """Hold a call's slots (`limits.max_calls_per_principal`, `max_calls_per_upstream`) for the block; the
        yielded function gives them up early (a call the upstream runs as its own task)."""
        with ExitStack() as slots:
            key = f"{principal.issuer}|{principal.subject}"
            slots.enter_context(self.principal_slots.slot(key, principal.describe()))
            slots.enter_context(self.upstream_slots.slot(upstream, upstream))
            yield slots.close
