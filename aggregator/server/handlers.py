"""The downstream MCP server: what callers talk to, in either protocol era and over any transport.

Every handler works for the principal of the current request: lists are filtered by the policy and
every request is checked again when it is made; upstreams' requests for input reach the caller that
caused them (`aggregator.upstreams.caller`); errors become MCP errors in `aggregator.server.edge`.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import NotificationOptions, Server
from mcp.server.context import ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aggregator.catalog.catalog import SEPARATOR, Catalog, Entry
from aggregator.config.tasks import TasksSettings
from aggregator.errors import UnknownNameError, UpstreamUnavailableError
from aggregator.policy.principal import Principal
from aggregator.sdk import connection_of
from aggregator.server.edge import answer
from aggregator.server.endpoints import AGENT_TOOLS, is_management, on_admin_endpoint, served_elsewhere
from aggregator.server.guard import Guard
from aggregator.server.notify import Fingerprints, Notifier, digest
from aggregator.server.resources import ResourceHandlers
from aggregator.tasks.task import require_task
from aggregator.tools.admin import Admin
from aggregator.upstreams.caller import LOG_LEVEL_STATE_KEY, Caller, current_caller, interactive
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.tasks import held_slots
from aggregator.upstreams.upstream import Upstream

SERVER_NAME = "mcp-aggregator"
SERVER_VERSION = "0.1.0"

_ResultT = TypeVar("_ResultT")
Context = ServerRequestContext[Any, Any]


class GatewayServer:
    """Handlers of the downstream MCP server, bound to one gateway's catalog, pool and guard."""

    def __init__(self, catalog: Catalog, pool: UpstreamPool, guard: Guard) -> None:
        self.catalog = catalog
        self.pool = pool
        self.guard = guard
        self.admin: Admin | None = None
        self.discovery_mode = False
        self.management_on_mcp = False  # `management_tools_on_mcp`: offered on every endpoint, not only /mcp/admin
        self.tasks = TasksSettings(enabled=False)  # the gateway's `tasks` settings (required tools, stream hold)
        self.notifier = Notifier(self.fingerprint)
        self.resources = ResourceHandlers(self)
        self.notifier.after_change = self.resources.health_changed

    def build(self) -> Server[Any]:
        """The low-level SDK server with every handler registered."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging is deprecated in 2026-07-28, still served
            return self._build()

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema by exported name, for the SDK's 2026-07-28 header checks (without it
        the SDK would run the whole filtered, audited tools/list before every call)."""
        if self.admin is not None and name in self.admin.tools:
            return dict(self.admin.tools[name].tool().input_schema)
        try:
            return dict(self.catalog.resolve_tool(name).item.input_schema)
        except UnknownNameError:
            return None

    def _build(self) -> Server[Any]:
        return _AnnouncingServer(
            SERVER_NAME,
            version=SERVER_VERSION,
            title="MCP Aggregator",
            description="One MCP endpoint for many MCP servers.",
            get_tool_input_schema=self.input_schema,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_list_resources=self.resources.list_resources,
            on_list_resource_templates=self.resources.list_resource_templates,
            on_read_resource=self.resources.read_resource,
            on_completion=self.complete,
            on_subscriptions_listen=self.resources.listen,
            on_subscribe_resource=self.resources.subscribe,
            on_unsubscribe_resource=self.resources.unsubscribe,
            on_set_logging_level=self.set_logging_level,
        )

    # visibility

    def fingerprint(self, principal: Principal) -> Fingerprints:
        """What `principal` sees, hashed; the notifier compares these to decide whom to tell."""
        return (
            digest(self.admin_tools(principal) + [e.item for e in self.catalog.tools(self._sees_tool(principal))]),
            digest([e.item for e in self.catalog.prompts(self._sees_prompt(principal))]),
            digest(
                [e.item for e in self.catalog.resources(self.sees_resource(principal))]
                + [e.item for e in self.catalog.templates(self.sees_resource(principal))]
            ),
        )

    def admin_tools(self, principal: Principal, only: frozenset[str] | None = None) -> list[types.Tool]:
        """The gateway's own tools `principal` may see (of those in `only`, when given): both paths list these."""
        if (admin := self.admin) is None:
            return []
        return [
            tool.tool()
            for name, tool in admin.tools.items()
            if (only is None or name in only) and admin.visible(principal, name)
        ]

    def offers_management(self, request: Any) -> bool:
        """Whether the endpoint `request` came to offers the management tools (`aggregator.server.endpoints`)."""
        return self.management_on_mcp or on_admin_endpoint(request)

    def discovery(self, ctx: Context) -> bool:
        """Discovery mode: set for the whole gateway, or per request with `?tools=discover`."""
        request = ctx.request
        asked = request is not None and getattr(request, "query_params", {}).get("tools") == "discover"
        return self.discovery_mode or asked

    def _sees_tool(self, principal: Principal) -> Callable[[Entry[types.Tool]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "tools/call", entry.original_name)

    def _sees_prompt(self, principal: Principal) -> Callable[[Entry[types.Prompt]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "prompts/get")

    def sees_resource(self, principal: Principal) -> Callable[[Entry[Any]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "resources/read")

    def may(self, principal: Principal, method: str) -> Callable[[str], bool]:
        policy = self.guard.policy.current
        return lambda server: policy.allows(principal, server, method)

    # handlers

    async def list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        async def handle(principal: Principal) -> types.ListToolsResult:
            if self.discovery(ctx):
                return types.ListToolsResult(tools=self.admin_tools(principal, only=AGENT_TOOLS))
            own = self.admin_tools(principal, only=None if self.offers_management(ctx.request) else AGENT_TOOLS)
            return types.ListToolsResult(tools=own + [e.item for e in self.catalog.tools(self._sees_tool(principal))])

        return await self.serve(ctx, "tools/list", None, handle)

    async def call_tool(
        self, ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.CallToolResult | types.InputRequiredResult:
            await self.guard.limiter.admit(principal)
            if self.admin is not None and params.name in self.admin.tools:
                if is_management(params.name) and not self.offers_management(ctx.request):
                    self._management_elsewhere(principal, params.name)
                elif self.admin.visible(principal, params.name):
                    return await self.admin.call(principal, params.name, params.arguments)
            progress = ctx.session.report_progress if (params.meta or {}).get("progress_token") is not None else None
            return await self.call_upstream_tool(
                principal, params.name, params.arguments, progress, params.input_responses, params.request_state
            )

        return await self.serve(ctx, "tools/call", params.name, handle)

    async def call_upstream_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFnT | None = None,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call the exported tool `name` for `principal`: policy, size and concurrency checks, then the upstream."""
        entry = self._resolve_tool(name, principal)
        require_task(self.tasks, entry.upstream, entry.original_name, name, current_caller.get())
        upstream = self.pool.get(entry.upstream)
        self.guard.check_arguments(name, arguments)

        async def attempt(
            responses: types.InputResponses | None, state: str | None
        ) -> types.CallToolResult | types.InputRequiredResult:
            return await upstream.call_tool(
                entry.original_name, arguments, progress=progress, input_responses=responses, request_state=state
            )

        with self.guard.call_slots(principal, upstream.name) as release:
            token = held_slots.set(release)  # released early once the upstream runs the call as its own task
            try:
                return await interactive(attempt, input_responses, request_state)
            finally:
                held_slots.reset(token)

    async def describe_tool(self, principal: Principal, name: str) -> dict[str, Any]:
        """A tool's description and schemas, for discovery mode (same visibility as tools/list)."""
        entry = self.catalog.resolve_tool(name, self._sees_tool(principal))
        tool = entry.item
        return {
            "name": tool.name,
            "server": entry.upstream,
            "title": tool.title,
            "description": tool.description,
            "input_schema": tool.input_schema,
            "output_schema": tool.output_schema,
        }

    def visible_tools(self, principal: Principal) -> list[Entry[types.Tool]]:
        """The upstream tools `principal` may call (what the finder may rank for it)."""
        return self.catalog.tools(self._sees_tool(principal))

    async def list_prompts(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        async def handle(principal: Principal) -> types.ListPromptsResult:
            return types.ListPromptsResult(prompts=[e.item for e in self.catalog.prompts(self._sees_prompt(principal))])

        return await self.serve(ctx, "prompts/list", None, handle)

    async def get_prompt(
        self, ctx: Context, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.GetPromptResult | types.InputRequiredResult:
            await self.guard.limiter.admit(principal)
            entry = self.catalog.resolve_prompt(params.name, self._sees_prompt(principal))
            upstream = self.pool.get(entry.upstream)

            async def attempt(
                responses: types.InputResponses | None, state: str | None
            ) -> types.GetPromptResult | types.InputRequiredResult:
                return await upstream.get_prompt(
                    entry.original_name, params.arguments, input_responses=responses, request_state=state
                )

            return await interactive(attempt, params.input_responses, params.request_state)

        return await self.serve(ctx, "prompts/get", params.name, handle)

    async def complete(self, ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
        async def handle(principal: Principal) -> types.CompleteResult:
            ref = params.ref
            may = self.may(principal, "completion/complete")
            forwarded: types.PromptReference | types.ResourceTemplateReference
            if isinstance(ref, types.PromptReference):
                entry = self.catalog.resolve_prompt(ref.name, lambda e: may(e.upstream))
                server, forwarded = entry.upstream, ref.model_copy(update={"name": entry.original_name})
            else:
                server, original = self.catalog.resolve_template(ref.uri, may)
                forwarded = ref.model_copy(update={"uri": original})
            return await self.pool.get(server).complete(params.model_copy(update={"ref": forwarded}))

        name = params.ref.name if isinstance(params.ref, types.PromptReference) else params.ref.uri
        return await self.serve(ctx, "completion/complete", name, handle)

    async def set_logging_level(self, ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        async def handle(principal: Principal) -> types.EmptyResult:
            connection_of(ctx.session).state[LOG_LEVEL_STATE_KEY] = params.level
            return types.EmptyResult()

        return await self.serve(ctx, "logging/setLevel", params.level, handle)

    # plumbing

    async def serve(
        self, ctx: Context, method: str, name: str | None, handle: Callable[[Principal], Awaitable[_ResultT]]
    ) -> _ResultT:
        caller = current_caller.set(Caller(ctx))
        try:
            return await answer(self.guard, method, name, lambda principal: self._track(ctx, principal, handle))
        finally:
            current_caller.reset(caller)

    async def _track(
        self, ctx: Context, principal: Principal, handle: Callable[[Principal], Awaitable[_ResultT]]
    ) -> _ResultT:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self.notifier.watch(connection_of(ctx.session), principal)
        return await handle(principal)

    def _resolve_tool(self, name: str, principal: Principal) -> Entry[types.Tool]:
        """Resolve for this principal. For a name under the prefix of a server that never connected
        (its tools are unknown yet), say the server is unavailable, but only to a caller the policy
        would let call that tool: others learn nothing."""
        try:
            return self.catalog.resolve_tool(name, self._sees_tool(principal))
        except UnknownNameError:
            for upstream in self.pool:
                if self._never_listed(upstream, name) and self.guard.policy.current.allows(
                    principal, upstream.name, "tools/call", name[len(self.catalog.prefix_of(upstream.name)) + 2 :]
                ):
                    raise UpstreamUnavailableError(upstream.name, upstream.last_error or "") from None
            raise

    def _management_elsewhere(self, principal: Principal, name: str) -> None:
        """Refuse a management tool here: naming /mcp/admin to whom may use it, else as unknown (as there)."""
        try:  # an upstream may export the same name unprefixed
            self.catalog.resolve_tool(name, self._sees_tool(principal))
        except UnknownNameError as unknown:
            raise served_elsewhere(name) if self.admin and self.admin.visible(principal, name) else unknown from None

    def _never_listed(self, upstream: Upstream, name: str) -> bool:
        prefix = self.catalog.prefix_of(upstream.name)
        return bool(upstream.last_error and not upstream.tools and prefix and name.startswith(prefix + SEPARATOR))


class _AnnouncingServer(Server[Any]):
    """The SDK server, declaring what the gateway does to 2025-11-25 clients: it sends `list_changed`
    for tools, prompts and resources (the SDK's default declares none, and clients built on the
    TypeScript SDK v1 then ignore the notifications)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        announced = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(announced, experimental_capabilities, extensions)
