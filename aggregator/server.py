"""The downstream MCP server: what callers talk to, in either protocol era and over any transport.

This is the one place where the gateway's exceptions become MCP errors (`_as_mcp_error`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from aggregator.catalog import SEPARATOR, Catalog, CatalogTool
from aggregator.errors import (
    GatewayError,
    UnknownNameError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.upstreams.pool import UpstreamPool

logger = logging.getLogger(__name__)

# Implementation-defined JSON-RPC codes (the -32000..-32099 range), documented in the README.
UPSTREAM_UNAVAILABLE = -32050
UPSTREAM_PROTOCOL_ERROR = -32051

SERVER_NAME = "mcp-aggregator"
SERVER_VERSION = "0.1.0"

_ResultT = TypeVar("_ResultT")


def build_server(catalog: Catalog, pool: UpstreamPool) -> Server[Any]:
    """The low-level MCP server that re-exports the catalog and routes calls to upstreams."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=catalog.tools())

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        async def call() -> types.CallToolResult:
            entry = _resolve_tool(catalog, pool, params.name)
            upstream = pool.get(entry.upstream)
            wants_progress = params.meta is not None and params.meta.get("progress_token") is not None
            return await upstream.call_tool(
                entry.original_name,
                params.arguments,
                progress=ctx.session.report_progress if wants_progress else None,
            )

        return await _answer("tools/call", params.name, call)

    return Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="MCP Aggregator",
        description="One MCP endpoint for many MCP servers.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _resolve_tool(catalog: Catalog, pool: UpstreamPool, name: str) -> CatalogTool:
    """Resolve through the catalog; for a name under the prefix of a server that never connected,
    say that the server is unavailable rather than that the tool is unknown."""
    try:
        return catalog.resolve_tool(name)
    except UnknownNameError:
        for upstream in pool:
            if (
                upstream.last_error is not None
                and not upstream.tools
                and name.startswith(catalog.prefix_of(upstream.name) + SEPARATOR)
            ):
                raise UpstreamUnavailableError(upstream.name, upstream.last_error) from None
        raise


async def _answer(method: str, name: str, handler: Callable[[], Awaitable[_ResultT]]) -> _ResultT:
    """Run one request's handler, log its outcome, and turn gateway errors into MCP errors."""
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
        logger.info(
            "request",
            extra={
                "method": method,
                "target": name,
                "outcome": outcome,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )


def _as_mcp_error(error: GatewayError) -> MCPError:
    if isinstance(error, UnknownNameError):
        return MCPError(
            types.INVALID_PARAMS, str(error), {"suggestions": error.suggestions} if error.suggestions else None
        )
    if isinstance(error, UpstreamError):
        data = {"upstream": error.upstream}
        if isinstance(error, UpstreamTimeoutError):
            return MCPError(types.REQUEST_TIMEOUT, str(error), data)
        if isinstance(error, UpstreamRejectedError):
            return MCPError(error.code, str(error), data)
        if isinstance(error, UpstreamProtocolError):
            return MCPError(UPSTREAM_PROTOCOL_ERROR, str(error), data)
        if isinstance(error, UpstreamUnavailableError):
            return MCPError(UPSTREAM_UNAVAILABLE, str(error), data)
    return MCPError(types.INTERNAL_ERROR, str(error))
