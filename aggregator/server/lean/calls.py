"""What the lean path does with a `tools/call` or `tools/list`: the SDK path's handlers, step for step.

Each step is the one `GatewayServer.call_tool` / `list_tools` takes, with the same functions: the
rate limiter, the catalog (the policy's decisions memoised, `DecisionCache`), the argument size
limit, the principal and upstream concurrency slots, and `edge.answer` around it all for the log
line, the audit record, the metrics and the mapping of gateway errors to MCP errors. The upstream
is reached through its lean transport (`Upstream.lean`); an `input_required` answer goes
through `caller.interactive` as on the SDK path. The result is shaped by the SDK's own pipeline.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.connection import Connection

from aggregator.catalog.catalog import SEPARATOR, Entry
from aggregator.errors import UnknownNameError, UpstreamUnavailableError
from aggregator.policy.principal import Principal
from aggregator.sdk import ResultShaper
from aggregator.server.edge import answer
from aggregator.server.endpoints import AGENT_TOOLS
from aggregator.server.handlers import GatewayServer
from aggregator.server.lean.decisions import DecisionCache
from aggregator.upstreams.caller import interactive

ToolResult = types.CallToolResult | types.InputRequiredResult


class LeanCalls:
    """The lean path's handlers, bound to one gateway's handlers (catalog, pool, guard) and server."""

    def __init__(self, handlers: GatewayServer, decisions: DecisionCache, shaper: ResultShaper) -> None:
        self._handlers = handlers
        self._decisions = decisions
        self._shaper = shaper

    def _watch(self, connection: Connection | None, principal: Principal) -> None:
        if connection is not None:  # a 2025-11-25 session, as `GatewayServer._track` does
            self._handlers.notifier.watch(connection, principal)

    async def call_tool(
        self, params: types.CallToolRequestParams, version: str, connection: Connection | None
    ) -> dict[str, Any]:
        """Answer `tools/call` for the current principal; its wire result, or the `MCPError` the SDK path raises."""
        guard = self._handlers.guard

        async def handle(principal: Principal) -> ToolResult:
            self._watch(connection, principal)
            await guard.limiter.admit(principal)
            return await self._call_upstream_tool(principal, params.name, params.arguments)

        result = await answer(guard, "tools/call", params.name, handle)
        return self._shaper.shape("tools/call", version, result)

    async def list_tools(self, version: str, connection: Connection | None, request: Any) -> dict[str, Any]:
        """Answer `tools/list` (outside discovery mode) for the current principal, as the SDK path does:
        the management tools only where the endpoint of `request` offers them."""
        handlers = self._handlers
        management = handlers.offers_management(request)

        async def handle(principal: Principal) -> types.ListToolsResult:
            self._watch(connection, principal)
            admin = handlers.admin_tools(principal, only=None if management else AGENT_TOOLS)
            visible = handlers.catalog.tools(lambda entry: self._allows(principal, entry))
            return types.ListToolsResult(tools=admin + [entry.item for entry in visible])

        result = await answer(handlers.guard, "tools/list", None, handle)
        return self._shaper.shape("tools/list", version, result)

    def _allows(self, principal: Principal, entry: Entry[types.Tool]) -> bool:
        return self._decisions.allows(principal, entry.upstream, entry.original_name)

    async def _call_upstream_tool(
        self, principal: Principal, name: str, arguments: dict[str, Any] | None
    ) -> ToolResult:
        """`GatewayServer.call_upstream_tool` without progress or input retries (the lean path takes neither)."""
        handlers, guard = self._handlers, self._handlers.guard
        entry = self._resolve_tool(principal, name)
        upstream = handlers.pool.get(entry.upstream)
        guard.check_arguments(name, arguments)

        async def attempt(responses: types.InputResponses | None, state: str | None) -> ToolResult:
            return await upstream.lean.call_tool(entry.original_name, arguments, responses, state)

        with guard.call_slots(principal, upstream.name):
            return await interactive(attempt, None, None)

    def _resolve_tool(self, principal: Principal, name: str) -> Entry[types.Tool]:
        """`GatewayServer._resolve_tool`: unknown and forbidden read alike, except a never-listed server's tools."""
        handlers = self._handlers
        try:
            return handlers.catalog.resolve_tool(name, lambda entry: self._allows(principal, entry))
        except UnknownNameError:
            policy = handlers.guard.policy.current
            for upstream in handlers.pool:
                prefix = handlers.catalog.prefix_of(upstream.name)
                never_listed = upstream.last_error and not upstream.tools and prefix
                if (
                    never_listed
                    and name.startswith(prefix + SEPARATOR)
                    and policy.allows(principal, upstream.name, "tools/call", name[len(prefix) + 2 :])
                ):
                    raise UpstreamUnavailableError(upstream.name, upstream.last_error or "") from None
            raise
