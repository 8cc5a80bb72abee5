"""The downstream MCP server: what callers talk to, in either protocol era and over any transport.

Every handler works for the principal of the current request (`current_principal`): lists are
filtered by the policy and every call is checked again when it is made. This is also the one
place where the gateway's exceptions become MCP errors (`_as_mcp_error`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from aggregator.catalog import SEPARATOR, Catalog, CatalogTool
from aggregator.errors import (
    AccessDeniedError,
    AuthenticationError,
    GatewayError,
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
from aggregator.policy.ratelimit import RateLimiter
from aggregator.policy.reload import PolicyHolder
from aggregator.upstreams.pool import UpstreamPool

logger = logging.getLogger(__name__)

# Implementation-defined JSON-RPC codes (the -32000..-32099 range), documented in the README.
UPSTREAM_UNAVAILABLE = -32050
UPSTREAM_PROTOCOL_ERROR = -32051
RATE_LIMITED = -32029
UNAUTHENTICATED = -32040

SERVER_NAME = "mcp-aggregator"
SERVER_VERSION = "0.1.0"

_ResultT = TypeVar("_ResultT")


@dataclass(frozen=True, slots=True)
class Guard:
    """What every request passes: the policy, the rate limiter and the audit log."""

    policy: PolicyHolder
    limiter: RateLimiter
    audit: AuditLog

    def principal(self) -> Principal:
        """The caller of the request being served; there is always one behind the auth layer."""
        principal = current_principal.get()
        if principal is None:
            raise AuthenticationError("no authenticated principal for this request")
        return principal

    def tool_visible(self, principal: Principal) -> Callable[[CatalogTool], bool]:
        policy = self.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "tools/call", entry.original_name)


def build_server(catalog: Catalog, pool: UpstreamPool, guard: Guard) -> Server[Any]:
    """The low-level MCP server that re-exports the catalog and routes calls to upstreams."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        async def answer() -> types.ListToolsResult:
            visible = guard.tool_visible(guard.principal())
            return types.ListToolsResult(tools=[entry.tool for entry in catalog.entries() if visible(entry)])

        return await _answer(guard, "tools/list", None, answer)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        async def answer() -> types.CallToolResult:
            principal = guard.principal()
            guard.limiter.check(principal)
            entry = _resolve_tool(catalog, pool, params.name, guard, principal)
            wants_progress = params.meta is not None and params.meta.get("progress_token") is not None
            return await pool.get(entry.upstream).call_tool(
                entry.original_name,
                params.arguments,
                progress=ctx.session.report_progress if wants_progress else None,
            )

        return await _answer(guard, "tools/call", params.name, answer)

    return Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="MCP Aggregator",
        description="One MCP endpoint for many MCP servers.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _resolve_tool(catalog: Catalog, pool: UpstreamPool, name: str, guard: Guard, principal: Principal) -> CatalogTool:
    """Resolve through the catalog for this principal. For a name under the prefix of a server
    that never connected (so its tools are not known yet), say the server is unavailable, but
    only to a caller the policy would let call that tool: others learn nothing."""
    try:
        return catalog.resolve_tool(name, guard.tool_visible(principal))
    except UnknownNameError:
        for upstream in pool:
            prefix = catalog.prefix_of(upstream.name)
            if not (upstream.last_error and not upstream.tools and prefix and name.startswith(prefix + SEPARATOR)):
                continue
            if guard.policy.current.allows(principal, upstream.name, "tools/call", name[len(prefix) + 2 :]):
                raise UpstreamUnavailableError(upstream.name, upstream.last_error) from None
        raise


async def _answer(guard: Guard, method: str, name: str | None, handler: Callable[[], Awaitable[_ResultT]]) -> _ResultT:
    """Run one request's handler; log and audit its outcome; turn gateway errors into MCP errors."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await handler()
    except GatewayError as error:
        outcome = type(error).__name__
        raise _as_mcp_error(error) from None
    except MCPError:
        outcome = "MCPError"
        raise
    except Exception:  # per-request top level: log the traceback, answer without internals
        outcome = "internal_error"
        logger.exception("request.failed", extra={"method": method, "target": name})
        raise MCPError(types.INTERNAL_ERROR, "Internal gateway error; the gateway log has the details.") from None
    finally:
        milliseconds = round((time.perf_counter() - started) * 1000, 2)
        principal = current_principal.get()
        logger.info(
            "request",
            extra={
                "principal": principal.describe() if principal else None,
                "method": method,
                "target": name,
                "outcome": outcome,
                "ms": milliseconds,
            },
        )
        if principal is not None:
            denied = outcome in ("UnknownNameError", "AccessDeniedError", "RateLimitedError")
            decision = "deny" if denied else "allow"
            guard.audit.record(principal, method, name, decision, outcome=outcome, latency_ms=milliseconds)


def _as_mcp_error(error: GatewayError) -> MCPError:
    if isinstance(error, UnknownNameError):
        return MCPError(
            types.INVALID_PARAMS, str(error), {"suggestions": error.suggestions} if error.suggestions else None
        )
    if isinstance(error, RateLimitedError):
        return MCPError(RATE_LIMITED, str(error), {"retryAfterSeconds": round(error.retry_after, 1)})
    if isinstance(error, AuthenticationError):
        return MCPError(UNAUTHENTICATED, "Authentication required.")
    if isinstance(error, AccessDeniedError):
        return MCPError(types.INVALID_REQUEST, str(error))
    if isinstance(error, UpstreamError):
        data = {"upstream": error.upstream}
        if isinstance(error, UpstreamTimeoutError):
            return MCPError(types.REQUEST_TIMEOUT, str(error), data)
        if isinstance(error, UpstreamRejectedError):
            return MCPError(error.code, str(error), error.data)
        if isinstance(error, UpstreamProtocolError):
            return MCPError(UPSTREAM_PROTOCOL_ERROR, str(error), data)
        if isinstance(error, UpstreamUnavailableError):
            return MCPError(UPSTREAM_UNAVAILABLE, str(error), data)
    return MCPError(types.INTERNAL_ERROR, str(error))
