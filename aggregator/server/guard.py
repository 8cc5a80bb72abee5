"""What every downstream request passes: who is calling, the policy, the rate limit, the audit log.

`answer` is also the one place where the gateway's exceptions become MCP errors, with the codes
the README documents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import mcp_types as types
from mcp import InputRequiredRoundsExceededError
from mcp.shared.exceptions import MCPError

from aggregator.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConfigError,
    GatewayError,
    LimitExceededError,
    RateLimitedError,
    UnknownNameError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import Principal, current_principal
from aggregator.policy.ratelimit import ConcurrencyLimiter, RateLimiter
from aggregator.policy.reload import PolicyHolder

if TYPE_CHECKING:
    from aggregator.server.metrics import Metrics

logger = logging.getLogger(__name__)

# Implementation-defined JSON-RPC codes (the -32000..-32099 range), documented in the README.
UPSTREAM_UNAVAILABLE = -32050
UPSTREAM_PROTOCOL_ERROR = -32051
RATE_LIMITED = -32029
UNAUTHENTICATED = -32040

_ResultT = TypeVar("_ResultT")
_DENIALS = frozenset({"UnknownNameError", "AccessDeniedError", "RateLimitedError", "LimitExceededError"})


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


async def answer(
    guard: Guard, method: str, name: str | None, handle: Callable[[Principal], Awaitable[_ResultT]]
) -> _ResultT:
    """Run one request's handler for the current principal; log and audit the outcome; map errors."""
    started = time.perf_counter()
    outcome = "ok"
    principal = current_principal.get()
    try:
        if principal is None:
            raise AuthenticationError("no authenticated principal for this request")
        return await handle(principal)
    except GatewayError as error:
        outcome = type(error).__name__
        raise as_mcp_error(error) from None
    except InputRequiredRoundsExceededError as error:
        outcome = "input_rounds_exceeded"
        raise MCPError(types.INTERNAL_ERROR, str(error)) from None
    except MCPError:
        outcome = "MCPError"
        raise
    except Exception:  # per-request top level: log the traceback, answer without internals
        outcome = "internal_error"
        logger.exception("request.failed", extra={"method": method, "target": name})
        raise MCPError(types.INTERNAL_ERROR, "Internal gateway error; the gateway log has the details.") from None
    finally:
        seconds = time.perf_counter() - started
        milliseconds = round(seconds * 1000, 2)
        who = principal.describe() if principal else None
        extra = {"principal": who, "method": method, "target": name, "outcome": outcome, "ms": milliseconds}
        logger.info("request", extra=extra)
        if principal is not None:
            decision = "deny" if outcome in _DENIALS else "allow"
            guard.audit.record(principal, method, name, decision, outcome=outcome, latency_ms=milliseconds)
        if guard.metrics is not None:
            guard.metrics.observe_request(method, name, outcome, seconds)


def as_mcp_error(error: GatewayError) -> MCPError:
    """The MCP error a caller receives for a gateway error."""
    if isinstance(error, UnknownNameError):
        return MCPError(
            types.INVALID_PARAMS, str(error), {"suggestions": error.suggestions} if error.suggestions else None
        )
    if isinstance(error, RateLimitedError):
        return MCPError(RATE_LIMITED, str(error), {"retryAfterSeconds": round(error.retry_after, 1)})
    if isinstance(error, LimitExceededError):
        return MCPError(RATE_LIMITED if "concurrent" in str(error) else types.INVALID_PARAMS, str(error))
    if isinstance(error, AuthenticationError):
        return MCPError(UNAUTHENTICATED, "Authentication required.")
    if isinstance(error, AccessDeniedError):
        return MCPError(types.INVALID_REQUEST, str(error))
    if isinstance(error, ConfigError):
        return MCPError(types.INVALID_PARAMS, str(error), {"issues": [str(issue) for issue in error.issues]})
    if isinstance(error, UpstreamError):
        data: dict[str, object] = {"upstream": error.upstream}
        if isinstance(error, UpstreamTimeoutError):
            return MCPError(types.REQUEST_TIMEOUT, str(error), data)
        if isinstance(error, UpstreamRejectedError):
            return MCPError(error.code, str(error), error.data)
        if isinstance(error, UpstreamProtocolError):
            return MCPError(UPSTREAM_PROTOCOL_ERROR, str(error), data)
        if isinstance(error, UpstreamUnavailableError):
            return MCPError(UPSTREAM_UNAVAILABLE, str(error), data)
    return MCPError(types.INTERNAL_ERROR, str(error))
