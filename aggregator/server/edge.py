"""The server edge: the one place where a request's outcome is logged, audited, counted, and where the
gateway's exceptions become MCP errors with the codes the README documents.

Every downstream handler runs its work through `answer`. The audit record states the decision the
policy made (`allow`, or `deny` for a refusal: an unknown or forbidden name, a missing permission,
a rate or size limit) and the outcome the caller saw (`ok`, `tool_error` for a tool result with
`isError: true`, or the error's class).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import mcp_types as types
from mcp import InputRequiredRoundsExceededError
from mcp.shared.exceptions import MCPError

from aggregator.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConcurrencyLimitError,
    ConfigError,
    GatewayError,
    LimitExceededError,
    MissingCapabilityError,
    RateLimitedError,
    UnknownNameError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.policy.principal import Principal, current_principal
from aggregator.server.guard import Guard
from aggregator.tracing import RequestSpan, Tracing
from aggregator.upstreams.caller import current_caller

logger = logging.getLogger(__name__)

# Implementation-defined JSON-RPC codes (the -32000..-32099 range), documented in the README.
UPSTREAM_UNAVAILABLE = -32050
UPSTREAM_PROTOCOL_ERROR = -32051
RATE_LIMITED = -32029
UNAUTHENTICATED = -32040

_ResultT = TypeVar("_ResultT")
DENIALS = (UnknownNameError, AccessDeniedError, RateLimitedError, LimitExceededError)
"""The errors that are the policy's (or a limit's) refusal, audited as `decision: deny`."""


async def answer(
    guard: Guard, method: str, name: str | None, handle: Callable[[Principal], Awaitable[_ResultT]]
) -> _ResultT:
    """Run one request's handler for the current principal; log, audit and count the outcome; map errors."""
    started = time.perf_counter()
    outcome = "ok"
    denied = False
    principal = current_principal.get()
    span = _request_span(guard.tracing, method, name) if guard.tracing is not None else None
    try:
        if principal is None:
            raise AuthenticationError("no authenticated principal for this request")
        result = await handle(principal)
        if isinstance(result, types.CallToolResult) and result.is_error:
            outcome = "tool_error"
        elif method == "tools/call" and name is not None and guard.after_call is not None:
            guard.after_call(principal, name)
        return result
    except GatewayError as error:
        outcome = type(error).__name__
        denied = isinstance(error, DENIALS)
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
            decision = "deny" if denied else "allow"
            caller = current_caller.get()
            client = caller.client_name() if caller is not None else None
            guard.audit.record(
                principal, method, name, decision, client=client, outcome=outcome, latency_ms=milliseconds
            )
        if guard.metrics is not None:
            guard.metrics.observe_request(method, name, outcome, seconds)
        if span is not None:
            span.end(outcome)


def _request_span(tracing: Tracing, method: str, name: str | None) -> RequestSpan:
    """The request's span, parented on the trace context the caller sent (`_meta` or HTTP header)."""
    caller = current_caller.get()
    context = caller.context if caller is not None else None
    headers = getattr(context.request, "headers", None) if context is not None else None
    return tracing.request(method, name, context.meta if context is not None else None, headers)


def as_mcp_error(error: GatewayError) -> MCPError:
    """The MCP error a caller receives for a gateway error."""
    if isinstance(error, UnknownNameError):
        return MCPError(types.INVALID_PARAMS, str(error), _unknown_name_data(error))
    if isinstance(error, RateLimitedError):
        return MCPError(RATE_LIMITED, str(error), {"retryAfterSeconds": round(error.retry_after, 1)})
    if isinstance(error, ConcurrencyLimitError):
        return MCPError(RATE_LIMITED, str(error))
    if isinstance(error, LimitExceededError):
        return MCPError(types.INVALID_PARAMS, str(error))
    if isinstance(error, AuthenticationError):
        return MCPError(UNAUTHENTICATED, "Authentication required.")
    if isinstance(error, AccessDeniedError):
        return MCPError(types.INVALID_REQUEST, str(error))
    if isinstance(error, MissingCapabilityError):
        return MCPError(
            types.MISSING_REQUIRED_CLIENT_CAPABILITY, str(error), {"requiredCapabilities": error.required_capabilities}
        )
    if isinstance(error, ConfigError):
        return MCPError(types.INVALID_PARAMS, str(error), {"issues": [str(issue) for issue in error.issues]})
    if isinstance(error, UpstreamError):
        upstream = {"upstream": error.upstream}
        if isinstance(error, UpstreamTimeoutError):
            return MCPError(types.REQUEST_TIMEOUT, str(error), upstream)
        if isinstance(error, UpstreamRejectedError):
            return MCPError(error.code, str(error), error.data)
        if isinstance(error, UpstreamProtocolError):
            return MCPError(UPSTREAM_PROTOCOL_ERROR, str(error), upstream)
        if isinstance(error, UpstreamUnavailableError):
            return MCPError(UPSTREAM_UNAVAILABLE, str(error), upstream)
    return MCPError(types.INTERNAL_ERROR, str(error))


def _unknown_name_data(error: UnknownNameError) -> dict[str, object] | None:
    if error.kind == "resource":
        return {"uri": error.name}
    return {"suggestions": error.suggestions} if error.suggestions else None
