"""Resources through the gateway: lists, reads, templates, subscriptions, and the gateway's own health.

Resource URIs are exported as `<prefix>+<uri>` (see `catalog`); reads and subscriptions go back to
the owning upstream. `gateway://health` is the gateway's own resource: every server's state, for
operators (UI `list_service`), updated whenever an upstream's state or listing changes; its `pinning`
part lists the tool definitions held for approval and the latest alerts (`aggregator.trust`).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError

from aggregator.catalog.catalog import Catalog, Entry, exported_uri
from aggregator.errors import UnknownNameError
from aggregator.policy.principal import Principal
from aggregator.sdk import connection_of
from aggregator.server.guard import Guard
from aggregator.server.notify import Notifier
from aggregator.tools.admin import describe
from aggregator.tools.pinning import pinning_health
from aggregator.upstreams.caller import interactive
from aggregator.upstreams.pool import UpstreamPool

_ResultT = TypeVar("_ResultT")

Context = ServerRequestContext[Any, Any]
HEALTH_URI = "gateway://health"
HEALTH_RESOURCE = types.Resource(
    uri=HEALTH_URI,
    name="health",
    title="Upstream health",
    description="Every server you may see: state, latency, tool counts, last check, last error. Subscribable.",
    mime_type="application/json",
)


class ResourceHost(Protocol):
    """What the resource handlers need of the downstream server (`GatewayServer`)."""

    catalog: Catalog
    pool: UpstreamPool
    guard: Guard
    notifier: Notifier

    async def serve(
        self, ctx: Context, method: str, name: str | None, handle: Callable[[Principal], Awaitable[_ResultT]]
    ) -> _ResultT: ...

    def sees_resource(self, principal: Principal) -> Callable[[Entry[Any]], bool]: ...

    def may(self, principal: Principal, method: str) -> Callable[[str], bool]: ...


class ResourceHandlers:
    """The resource half of the downstream server."""

    def __init__(self, server: ResourceHost) -> None:
        self._server = server
        self._listen_handler = ListenHandler(server.notifier.bus)
        self._followers: dict[str, weakref.WeakSet[Connection]] = {}

    def close_listeners(self) -> None:
        """End every 2026-07-28 listen stream gracefully (at shutdown)."""
        self._listen_handler.close()

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        async def handle(principal: Principal) -> types.ListResourcesResult:
            entries = self._server.catalog.resources(self._server.sees_resource(principal))
            own = [HEALTH_RESOURCE] if self._sees_health(principal) else []
            return types.ListResourcesResult(resources=own + [e.item for e in entries])

        return await self._server.serve(ctx, "resources/list", None, handle)

    async def list_resource_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        async def handle(principal: Principal) -> types.ListResourceTemplatesResult:
            entries = self._server.catalog.templates(self._server.sees_resource(principal))
            return types.ListResourceTemplatesResult(resource_templates=[e.item for e in entries])

        return await self._server.serve(ctx, "resources/templates/list", None, handle)

    async def read_resource(
        self, ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        async def handle(principal: Principal) -> types.ReadResourceResult | types.InputRequiredResult:
            await self._server.guard.limiter.admit(principal)
            if params.uri == HEALTH_URI and self._sees_health(principal):
                return self._health(principal)
            server, original = self._resolve_uri(params.uri, principal)
            upstream = self._server.pool.get(server)

            async def attempt(
                responses: types.InputResponses | None, state: str | None
            ) -> types.ReadResourceResult | types.InputRequiredResult:
                return await upstream.read_resource(original, input_responses=responses, request_state=state)

            result = await interactive(attempt, params.input_responses, params.request_state)
            if isinstance(result, types.ReadResourceResult):
                prefix = self._server.catalog.prefix_of(server)
                for content in result.contents:
                    content.uri = exported_uri(prefix, content.uri)
            return result

        return await self._server.serve(ctx, "resources/read", params.uri, handle)

    async def subscribe(self, ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """2025-11-25: follow a resource; its updates reach this session only."""

        async def handle(principal: Principal) -> types.EmptyResult:
            followers = self._followers.setdefault(params.uri, weakref.WeakSet())
            connection = connection_of(ctx.session)
            if params.uri == HEALTH_URI and self._sees_health(principal):
                followers.add(connection)
                return types.EmptyResult()
            server, original = self._resolve_uri(params.uri, principal)
            if connection not in followers:
                await self._server.pool.get(server).follow(original)
                followers.add(connection)
            return types.EmptyResult()

        return await self._server.serve(ctx, "resources/subscribe", params.uri, handle)

    async def unsubscribe(self, ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        async def handle(principal: Principal) -> types.EmptyResult:
            followers = self._followers.get(params.uri)
            if params.uri == HEALTH_URI:
                if followers is not None:
                    followers.discard(connection_of(ctx.session))
                return types.EmptyResult()
            server, original = self._resolve_uri(params.uri, principal)
            if followers is not None and connection_of(ctx.session) in followers:
                followers.discard(connection_of(ctx.session))
                await self._server.pool.get(server).unfollow(original)
            return types.EmptyResult()

        return await self._server.serve(ctx, "resources/unsubscribe", params.uri, handle)

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
                await self._server.pool.get(server).follow(original)
            try:
                return await self._listen_handler(ctx, filtered)
            finally:
                with anyio.CancelScope(shield=True):
                    for server, original in followed:
                        await self._server.pool.get(server).unfollow(original)

        return await self._server.serve(ctx, "subscriptions/listen", None, handle)

    async def resource_updated(self, server: str, original_uri: str) -> None:
        """An upstream resource changed: tell the sessions and listen streams that follow it."""
        await self.resource_updated_exported(exported_uri(self._server.catalog.prefix_of(server), original_uri))

    async def resource_updated_exported(self, uri: str) -> None:
        await self._server.notifier.bus.publish(ResourceUpdated(uri))
        for connection in list(self._followers.get(uri, ())):
            try:
                await connection.send_resource_updated(uri)
            except Exception:  # noqa: BLE001 - per-session boundary: a gone session must not stop the others
                self._followers[uri].discard(connection)

    def _sees_health(self, principal: Principal) -> bool:
        return self._server.guard.policy.current.may_administer(principal, "list_service")

    def _health(self, principal: Principal) -> types.ReadResourceResult:
        policy = self._server.guard.policy.current
        services = [describe(u) for u in self._server.pool if policy.may_administer(principal, "list_service", u.name)]
        health: dict[str, Any] = {"services": services}
        if (gate := self._server.catalog.gate) is not None:
            health["pinning"] = pinning_health(
                gate, lambda name: policy.may_administer(principal, "list_service", name)
            )
        text = json.dumps(health, default=str)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=HEALTH_URI, mime_type="application/json", text=text)]
        )

    async def health_changed(self) -> None:
        """Health is a resource: its followers hear of every upstream state or listing change."""
        await self.resource_updated_exported(HEALTH_URI)

    def _resolve_uri(self, uri: str, principal: Principal) -> tuple[str, str]:
        try:
            return self._server.catalog.resolve_resource(uri, self._server.may(principal, "resources/read"))
        except UnknownNameError:
            raise UnknownNameError("resource", uri, []) from None
