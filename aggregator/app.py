"""The ASGI application: wires settings, policy, upstreams, catalog and MCP server, and mounts the routes.

/mcp        streamable HTTP, both protocol eras (2025-11-25 sessions, 2026-07-28 stateless)
/sse        legacy HTTP+SSE stream (+ /messages/ for its POSTs)
/healthz    liveness: the process answers
/readyz     readiness: 200 when every enabled upstream is connected, else 503; JSON either way
/.well-known/oauth-protected-resource[/mcp]   RFC 9728 metadata for OAuth-capable hosts
/auth/validate   nginx auth_request: the policy decision on one passthrough request
/v0.1/servers[/{name}/versions[/{version}]]   registry read API (official MCP registry format, CORS)
/metrics    Prometheus metrics (public only with `metrics_public`)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskStatus
from mcp.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from aggregator.admin import Admin
from aggregator.catalog import Catalog
from aggregator.config import Settings
from aggregator.finder import FINDER, CallTool, DescribeTool, Finder
from aggregator.guard import Guard
from aggregator.metrics import Metrics, catalog_labels, metrics_routes
from aggregator.names import BudgetWarnings
from aggregator.nginx import NginxRenderer
from aggregator.policy.audit import AuditLog
from aggregator.policy.http import BearerAuthMiddleware, metadata_routes
from aggregator.policy.limits import RequestLimitsMiddleware
from aggregator.policy.principal import Principal
from aggregator.policy.ratelimit import ConcurrencyLimiter, RateLimiter
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.revocation import RevocationList
from aggregator.policy.tokens import TokenVerifier
from aggregator.policy.validate import validate_routes
from aggregator.registry import Registry
from aggregator.registry_api import registry_routes
from aggregator.server import GatewayServer
from aggregator.servers import ServersFile
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.upstream import Timings, Upstream

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class Gateway:
    """The live parts of one gateway, for the CLI and for tests to reach."""

    settings: Settings
    pool: UpstreamPool
    catalog: Catalog
    guard: Guard
    verifier: TokenVerifier | None
    http: httpx2.AsyncClient
    registry: Registry
    finder: Finder
    renderers: list[NginxRenderer]
    handlers: GatewayServer
    server: Server[Any]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Connect the upstreams and run the background tasks (notifications, policy reload)."""
        async with self.http, self.pool, anyio.create_task_group() as background:
            background.start_soon(self.handlers.notifier.run)
            background.start_soon(self.guard.policy.watch, self.settings.scopes_reload_interval, self._changed)
            background.start_soon(_announce_connected, self.pool)
            background.start_soon(self.registry.watch, self.settings.servers_reload_interval)
            background.start_soon(self.finder.run)
            if self.settings.nginx.manage:
                await background.start(self._manage_nginx)
            try:
                yield
            finally:
                background.cancel_scope.cancel()
                self.handlers.resources.close_listeners()
        self.guard.audit.close()

    async def _manage_nginx(self, *, task_status: TaskStatus[None]) -> None:
        """Keep nginx in step with the registry: one render now, then one per (debounced) change."""
        async with NginxRenderer(self.settings, lambda: self.registry.current) as renderer:
            self.renderers.append(renderer)
            renderer.schedule()
            task_status.started()
            await anyio.sleep_forever()

    def _changed(self) -> None:
        self.handlers.notifier.changed()


def build_gateway(settings: Settings, servers: ServersFile) -> Gateway:
    """Create (without starting) the policy, pool, catalog and downstream server for `servers`."""
    catalog = Catalog()
    timings = Timings(
        connect_timeout=settings.connect_timeout,
        health_interval=settings.health_interval,
        backoff_initial=settings.backoff_initial,
        backoff_max=settings.backoff_max,
        circuit_failures=settings.limits.circuit_failures,
        circuit_cooldown=settings.limits.circuit_cooldown,
        max_result_bytes=settings.limits.max_result_bytes,
    )

    def is_gateway_tool(name: str) -> bool:
        return handlers is not None and handlers.admin is not None and name in handlers.admin.tools

    guard = Guard(
        policy=PolicyHolder(settings.scopes_file),
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        audit=AuditLog(settings.data_dir / "audit.log" if settings.audit_log else None),
        metrics=Metrics(catalog_labels(catalog, settings.gateway_server_name, is_gateway_tool)),
        principal_slots=ConcurrencyLimiter(settings.limits.max_calls_per_principal, "for"),
        upstream_slots=ConcurrencyLimiter(settings.limits.max_calls_per_upstream, "to upstream"),
        max_argument_bytes=settings.limits.max_argument_bytes,
    )
    handlers: GatewayServer | None = None

    budget = BudgetWarnings(settings.host_server_name, settings.name_budget)

    def changed(pool: UpstreamPool) -> None:
        catalog.rebuild(pool)
        budget.check(entry.item.name for entry in catalog.tools())
        if handlers is not None:
            handlers.notifier.changed()
            finder.changed()

    async def resource_updated(upstream: Upstream, uri: str) -> None:
        if handlers is not None:
            await handlers.resources.resource_updated(upstream.name, uri)

    pool = UpstreamPool(
        servers,
        timings,
        on_change=changed,
        scopes_of=lambda p: guard.policy.current.scopes_of(p),
        on_resource_updated=resource_updated,
    )
    renderers: list[NginxRenderer] = []  # the running one, when `nginx.manage` is on

    async def registry_changed(servers: ServersFile) -> None:
        await pool.apply(servers)
        for renderer in renderers:
            renderer.schedule()

    registry = Registry(settings.servers_file, servers, registry_changed)
    handlers = GatewayServer(catalog, pool, guard)
    handlers.admin = Admin(settings, registry, pool, catalog, guard, on_policy_change=handlers.notifier.changed)
    handlers.discovery_mode = settings.discovery_mode
    server = handlers
    finder = Finder(
        settings.search_uri or settings.data_dir / "index",
        settings.search_model,
        pool,
        lambda: server.catalog.tools(),
        server.visible_tools,
    )

    async def describe(principal: Principal, arguments: DescribeTool) -> dict[str, Any]:
        return await server.describe_tool(principal, arguments.name)

    async def call(principal: Principal, arguments: CallTool) -> types.CallToolResult | types.InputRequiredResult:
        return await server.call_upstream_tool(principal, arguments.name, arguments.arguments)

    handlers.admin.add(finder.tools(describe, call), visible_as=FINDER)
    catalog.rebuild(pool)
    http = httpx2.AsyncClient(trust_env=False)
    verifier = None
    if settings.auth.enabled:
        verifier = TokenVerifier(settings.auth, http, RevocationList(settings.data_dir / "revoked.json"))
    return Gateway(
        settings, pool, catalog, guard, verifier, http, registry, finder, renderers, handlers, handlers.build()
    )


def create_app(gateway: Gateway, on_ready: Callable[[], None] | None = None) -> Starlette:
    """The HTTP application serving `gateway`; its lifespan connects and closes the upstreams.

    `on_ready` runs once the app is started (upstreams connect in the background after that).
    Without a token verifier every caller is unrestricted: only `--insecure-dev` builds that.
    """
    settings = gateway.settings
    security = _transport_security(settings.host)
    limits = settings.limits
    sessions = StreamableHTTPSessionManager(
        app=gateway.server,
        security_settings=security,
        max_request_body_size=limits.max_request_bytes,
        session_idle_timeout=limits.session_idle_timeout,
        max_sessions=limits.max_sessions,
    )
    sse = SseServerTransport("/messages/", security_settings=security, max_request_body_size=limits.max_request_bytes)
    sse_security = TransportSecurityMiddleware(security)
    server = gateway.server

    async def sse_stream(scope: Scope, receive: Receive, send: Send) -> None:
        # Refuse a foreign Host/Origin here: the SDK answers 421/403 too, but then raises into the server.
        if (refusal := await sse_security.validate_request(Request(scope, receive))) is not None:
            await refusal(scope, receive, send)
            return
        async with sse.connect_sse(scope, receive, send) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        upstreams = {
            u.name: {"state": u.state.value, "era": u.protocol_version, "tools": len(u.tools), "error": u.last_error}
            for u in gateway.pool
        }
        ready = gateway.pool.all_connected()
        body = {
            "ready": ready,
            "upstreams": upstreams,
            "policy_error": gateway.guard.policy.error,
            "registry_error": gateway.registry.error,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway.running(), sessions.run():
            if on_ready is not None:
                on_ready()
            yield

    routes = [
        Route("/mcp", StreamableHTTPASGIApp(sessions)),
        Route("/sse", _AsgiEndpoint(sse_stream), methods=["GET"]),
        Mount("/messages/", app=sse.handle_post_message),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *metadata_routes(settings.public_url, settings.auth.authorization_servers),
        *validate_routes(gateway.verifier, gateway.guard, settings.public_url, settings.auth.authorization_servers),
        *registry_routes(gateway),
        *metrics_routes(gateway),
    ]
    middleware = [
        Middleware(BearerAuthMiddleware, verifier=gateway.verifier, public_url=settings.public_url),
        Middleware(
            RequestLimitsMiddleware,
            max_bytes=limits.max_request_bytes,
            max_depth=limits.max_json_depth,
            max_batch=limits.max_batch_length,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _announce_connected(pool: UpstreamPool) -> None:
    started = anyio.current_time()
    await pool.wait_until(UpstreamPool.all_connected)
    seconds = round(anyio.current_time() - started, 2)
    logger.info("gateway.all_upstreams_connected", extra={"upstreams": len(list(pool)), "seconds": seconds})


class _AsgiEndpoint:
    """Marks a plain ASGI callable so Starlette's `Route` hands it the raw scope/receive/send."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection (Host and Origin checks) for loopback binds."""
    if host not in LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
