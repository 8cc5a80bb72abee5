"""The downstream MCP server: what callers talk to, in either protocol era and over any transport.

Every handler works for the principal of the current request (`current_principal`): lists are
filtered by the policy and every request is checked again when it is made. Requests for input
from upstreams reach the caller that caused them (`aggregator.caller`). This is also the one
place where the gateway's exceptions become MCP errors (`answer`, `as_mcp_error`).
"""

from __future__ import annotations

import json
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.client._input_required import run_input_required_driver
from mcp.server import Server
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aggregator.admin import Admin, describe
from aggregator.caller import LOG_LEVEL_STATE_KEY, Caller, current_caller
from aggregator.catalog import SEPARATOR, Catalog, Entry, exported_uri
from aggregator.errors import UnknownNameError, UpstreamUnavailableError
from aggregator.guard import Guard, answer
from aggregator.notify import Fingerprints, Notifier, digest
from aggregator.policy.principal import Principal
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.upstream import Upstream

SERVER_NAME = "mcp-aggregator"
HEALTH_URI = "gateway://health"
HEALTH_RESOURCE = types.Resource(
    uri=HEALTH_URI,
    name="health",
    title="Upstream health",
    description="Every server you may see: state, latency, tool counts, last check, last error. Subscribable.",
    mime_type="application/json",
)
SERVER_VERSION = "0.1.0"

_ResultT = TypeVar("_ResultT")
_InteractiveT = TypeVar("_InteractiveT", types.CallToolResult, types.GetPromptResult, types.ReadResourceResult)
Context = ServerRequestContext[Any, Any]


class GatewayServer:
    """Handlers of the downstream MCP server, bound to one gateway's catalog, pool and guard."""

    def __init__(self, catalog: Catalog, pool: UpstreamPool, guard: Guard) -> None:
        self.catalog = catalog
        self.pool = pool
        self.guard = guard
        self.admin: Admin | None = None
        self.notifier = Notifier(self.fingerprint, after_change=self._health_changed)
        self._listen = ListenHandler(self.notifier.bus)
        self._followers: dict[str, weakref.WeakSet[Connection]] = {}

    def build(self) -> Server[Any]:
        """The low-level SDK server with every handler registered."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging is deprecated in 2026-07-28, still served
            return self._build()

    def _build(self) -> Server[Any]:
        return Server(
            SERVER_NAME,
            version=SERVER_VERSION,
            title="MCP Aggregator",
            description="One MCP endpoint for many MCP servers.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_completion=self.complete,
            on_subscriptions_listen=self.listen,
            on_subscribe_resource=self.subscribe,
            on_unsubscribe_resource=self.unsubscribe,
            on_set_logging_level=self.set_logging_level,
        )

    def close_listeners(self) -> None:
        """End every 2026-07-28 listen stream gracefully (at shutdown)."""
        self._listen.close()

    # visibility

    def fingerprint(self, principal: Principal) -> Fingerprints:
        """What `principal` sees, hashed; the notifier compares these to decide whom to tell."""
        return (
            digest(self._admin_tools(principal) + [e.item for e in self.catalog.tools(self._sees_tool(principal))]),
            digest([e.item for e in self.catalog.prompts(self._sees_prompt(principal))]),
            digest(
                [e.item for e in self.catalog.resources(self._sees_resource(principal))]
                + [e.item for e in self.catalog.templates(self._sees_resource(principal))]
            ),
        )

    def _admin_tools(self, principal: Principal) -> list[types.Tool]:
        if self.admin is None:
            return []
        return [tool.tool() for name, tool in self.admin.tools.items() if self.admin.visible(principal, name)]

    def _sees_tool(self, principal: Principal) -> Callable[[Entry[types.Tool]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "tools/call", entry.original_name)

    def _sees_prompt(self, principal: Principal) -> Callable[[Entry[types.Prompt]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "prompts/get")

    def _sees_resource(self, principal: Principal) -> Callable[[Entry[Any]], bool]:
        policy = self.guard.policy.current
        return lambda entry: policy.allows(principal, entry.upstream, "resources/read")

    def _may(self, principal: Principal, method: str) -> Callable[[str], bool]:
        policy = self.guard.policy.current
        return lambda server: policy.allows(principal, server, method)

    # handlers

    async def list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        async def handle(principal: Principal) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=self._admin_tools(principal) + [e.item for e in self.catalog.tools(self._sees_tool(principal))]
            )

        return await self._serve(ctx, "tools/list", None, handle)

    async def call_tool(
        self, ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.CallToolResult | types.InputRequiredResult:
            self.guard.limiter.check(principal)
            if (
                self.admin is not None
                and params.name in self.admin.tools
                and self.admin.visible(principal, params.name)
            ):
                return await self.admin.call(principal, params.name, params.arguments)
            entry = self._resolve_tool(params.name, principal)
            upstream = self.pool.get(entry.upstream)
            wants_progress = params.meta is not None and params.meta.get("progress_token") is not None

            async def attempt(
                responses: types.InputResponses | None, state: str | None
            ) -> types.CallToolResult | types.InputRequiredResult:
                return await upstream.call_tool(
                    entry.original_name,
                    params.arguments,
                    progress=ctx.session.report_progress if wants_progress else None,
                    input_responses=responses,
                    request_state=state,
                )

            return await _interactive(attempt, params.input_responses, params.request_state)

        return await self._serve(ctx, "tools/call", params.name, handle)

    async def list_prompts(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        async def handle(principal: Principal) -> types.ListPromptsResult:
            return types.ListPromptsResult(prompts=[e.item for e in self.catalog.prompts(self._sees_prompt(principal))])

        return await self._serve(ctx, "prompts/list", None, handle)

    async def get_prompt(
        self, ctx: Context, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.GetPromptResult | types.InputRequiredResult:
            self.guard.limiter.check(principal)
            entry = self.catalog.resolve_prompt(params.name, self._sees_prompt(principal))
            upstream = self.pool.get(entry.upstream)

            async def attempt(
                responses: types.InputResponses | None, state: str | None
            ) -> types.GetPromptResult | types.InputRequiredResult:
                return await upstream.get_prompt(
                    entry.original_name, params.arguments, input_responses=responses, request_state=state
                )

            return await _interactive(attempt, params.input_responses, params.request_state)

        return await self._serve(ctx, "prompts/get", params.name, handle)

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        async def handle(principal: Principal) -> types.ListResourcesResult:
            entries = self.catalog.resources(self._sees_resource(principal))
            own = [HEALTH_RESOURCE] if self._sees_health(principal) else []
            return types.ListResourcesResult(resources=own + [e.item for e in entries])

        return await self._serve(ctx, "resources/list", None, handle)

    async def list_resource_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        async def handle(principal: Principal) -> types.ListResourceTemplatesResult:
            entries = self.catalog.templates(self._sees_resource(principal))
            return types.ListResourceTemplatesResult(resource_templates=[e.item for e in entries])

        return await self._serve(ctx, "resources/templates/list", None, handle)

    async def read_resource(
        self, ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.ReadResourceResult | types.InputRequiredResult:
            self.guard.limiter.check(principal)
            if params.uri == HEALTH_URI and self._sees_health(principal):
                return self._health(principal)
            server, original = self._resolve_uri(params.uri, principal)
            upstream = self.pool.get(server)

            async def attempt(
                responses: types.InputResponses | None, state: str | None
            ) -> types.ReadResourceResult | types.InputRequiredResult:
                return await upstream.read_resource(original, input_responses=responses, request_state=state)

            result = await _interactive(attempt, params.input_responses, params.request_state)
            if isinstance(result, types.ReadResourceResult):
                prefix = self.catalog.prefix_of(server)
                for content in result.contents:
                    content.uri = exported_uri(prefix, content.uri)
            return result

        return await self._serve(ctx, "resources/read", params.uri, handle)

    async def complete(self, ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
        async def handle(principal: Principal) -> types.CompleteResult:
            ref = params.ref
            may = self._may(principal, "completion/complete")
            forwarded: types.PromptReference | types.ResourceTemplateReference
            if isinstance(ref, types.PromptReference):
                entry = self.catalog.resolve_prompt(ref.name, lambda e: may(e.upstream))
                server, forwarded = entry.upstream, ref.model_copy(update={"name": entry.original_name})
            else:
                server, original = self.catalog.resolve_template(ref.uri, may)
                forwarded = ref.model_copy(update={"uri": original})
            return await self.pool.get(server).complete(params.model_copy(update={"ref": forwarded}))

        name = params.ref.name if isinstance(params.ref, types.PromptReference) else params.ref.uri
        return await self._serve(ctx, "completion/complete", name, handle)

    async def subscribe(self, ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """2025-11-25: follow a resource; its updates reach this session only."""

        async def handle(principal: Principal) -> types.EmptyResult:
            followers = self._followers.setdefault(params.uri, weakref.WeakSet())
            connection = ctx.session._connection
            if params.uri == HEALTH_URI and self._sees_health(principal):
                followers.add(connection)
                return types.EmptyResult()
            server, original = self._resolve_uri(params.uri, principal)
            if connection not in followers:
                await self.pool.get(server).follow(original)
                followers.add(connection)
            return types.EmptyResult()

        return await self._serve(ctx, "resources/subscribe", params.uri, handle)

    async def unsubscribe(self, ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        async def handle(principal: Principal) -> types.EmptyResult:
            followers = self._followers.get(params.uri)
            if params.uri == HEALTH_URI:
                if followers is not None:
                    followers.discard(ctx.session._connection)
                return types.EmptyResult()
            server, original = self._resolve_uri(params.uri, principal)
            if followers is not None and ctx.session._connection in followers:
                followers.discard(ctx.session._connection)
                await self.pool.get(server).unfollow(original)
            return types.EmptyResult()

        return await self._serve(ctx, "resources/unsubscribe", params.uri, handle)

    async def listen(
        self, ctx: Context, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """2026-07-28: one listen stream; resources the caller may not read are left out of it."""

        async def handle(principal: Principal) -> types.SubscriptionsListenResult:
            wanted = params.notifications.resource_subscriptions or []
            followed: list[tuple[str, str]] = []
            readable = []
            for uri in wanted:
                if uri == HEALTH_URI and self._sees_health(principal):
                    readable.append(uri)
                    continue
                try:
                    followed.append(self._resolve_uri(uri, principal))
                    readable.append(uri)
                except MCPError:
                    continue
            filtered = params.model_copy(
                update={"notifications": params.notifications.model_copy(update={"resource_subscriptions": readable})}
            )
            for server, original in followed:
                await self.pool.get(server).follow(original)
            try:
                return await self._listen(ctx, filtered)
            finally:
                with anyio.CancelScope(shield=True):
                    for server, original in followed:
                        await self.pool.get(server).unfollow(original)

        return await self._serve(ctx, "subscriptions/listen", None, handle)

    async def resource_updated(self, server: str, original_uri: str) -> None:
        """An upstream resource changed: tell the sessions and listen streams that follow it."""
        await self.resource_updated_exported(exported_uri(self.catalog.prefix_of(server), original_uri))

    async def resource_updated_exported(self, uri: str) -> None:
        await self.notifier.bus.publish(ResourceUpdated(uri))
        for connection in list(self._followers.get(uri, ())):
            try:
                await connection.send_resource_updated(uri)
            except Exception:  # noqa: BLE001 - per-session boundary: a gone session must not stop the others
                self._followers[uri].discard(connection)

    def _sees_health(self, principal: Principal) -> bool:
        return self.guard.policy.current.may_administer(principal, "list_service")

    def _health(self, principal: Principal) -> types.ReadResourceResult:
        policy = self.guard.policy.current
        services = [describe(u) for u in self.pool if policy.may_administer(principal, "list_service", u.name)]
        text = json.dumps({"services": services}, default=str)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=HEALTH_URI, mime_type="application/json", text=text)]
        )

    async def _health_changed(self) -> None:
        """Health is a resource: its followers hear of every upstream state or listing change."""
        await self.resource_updated_exported(HEALTH_URI)

    def _resolve_uri(self, uri: str, principal: Principal) -> tuple[str, str]:
        try:
            return self.catalog.resolve_resource(uri, self._may(principal, "resources/read"))
        except UnknownNameError:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource '{uri}'.", {"uri": uri}) from None

    async def set_logging_level(self, ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        async def handle(principal: Principal) -> types.EmptyResult:
            ctx.session._connection.state[LOG_LEVEL_STATE_KEY] = params.level
            return types.EmptyResult()

        return await self._serve(ctx, "logging/setLevel", params.level, handle)

    # plumbing

    async def _serve(
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
            self.notifier.watch(ctx.session._connection, principal)  # the SDK exposes no public accessor
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

    def _never_listed(self, upstream: Upstream, name: str) -> bool:
        prefix = self.catalog.prefix_of(upstream.name)
        return bool(upstream.last_error and not upstream.tools and prefix and name.startswith(prefix + SEPARATOR))


async def _interactive(
    attempt: Callable[[types.InputResponses | None, str | None], Awaitable[_InteractiveT | types.InputRequiredResult]],
    responses: types.InputResponses | None,
    state: str | None,
) -> _InteractiveT | types.InputRequiredResult:
    """Run a request that may need input from the caller.

    A 2026-07-28 caller gets the upstream's `InputRequiredResult` as it is and retries by itself
    (its retry carries the responses and the upstream's opaque state back through here). For a
    2025-11-25 caller the gateway drives the loop, putting each question to the caller as a
    server-to-client request.
    """
    first = await attempt(responses, state)
    caller = current_caller.get()
    if not isinstance(first, types.InputRequiredResult) or caller is None:
        return first
    if caller.modern:
        for request in (first.input_requests or {}).values():
            if (missing := caller.missing_capability(request.method)) is not None:
                raise MCPError(
                    types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                    f"This request needs the '{missing}' client capability, which the caller did not declare.",
                    {"requiredCapabilities": {missing: {}}},
                )
        return first

    async def dispatch(key: str, request: types.InputRequest) -> types.InputResponse | types.ErrorData:
        return await caller.ask(request)

    return await run_input_required_driver(first, dispatch=dispatch, retry=attempt)
