"""The ASGI application: the routes and middleware in front of one assembled `Gateway`.

/mcp        streamable HTTP, both protocol eras (2025-11-25 sessions, 2026-07-28 stateless): for agents
/mcp/admin  the same, plus the management tools (`aggregator.server.endpoints`): for operators, the TUI
/sse        legacy HTTP+SSE stream (+ /messages/ for its POSTs)
/healthz    liveness: the process answers
/readyz     readiness: 200 once the gateway can serve (policy loaded, listening, every upstream's first
            connection attempt settled, the upstreams marked `required: true` connected), else 503;
            `{"ready": bool}` for anyone, upstream states and errors only for operators (UI
            list_service for `all`)
/.well-known/oauth-protected-resource[/mcp[/admin]]   RFC 9728 metadata for OAuth-capable hosts
/auth/validate   nginx auth_request: the policy decision on one passthrough request
/v0.1/servers[/{name}/versions[/{version}]]   registry read API (official MCP registry format, CORS)
/metrics    Prometheus metrics (public only with `metrics_public`)

Every 4xx answer is logged as one line (`refusals`); request bodies are held to the limits
(`policy.limits`) before anything parses them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.cluster import SessionSharing
from aggregator.config.settings import Settings
from aggregator.errors import AuthenticationError
from aggregator.http.auth import Authenticator, BearerAuthMiddleware, PublicOrigin, metadata_routes
from aggregator.http.metrics import metrics_routes
from aggregator.http.refusals import RefusalLogMiddleware, quiet_sdk_parse_failures
from aggregator.http.registry_api import registry_routes
from aggregator.http.validate import validate_routes
from aggregator.nginx.cache import REVOCATIONS, CacheMarks
from aggregator.policy.limits import BodyInspector, BodyLimits, RequestLimitsMiddleware, printable
from aggregator.server.endpoints import ADMIN_PATH, MCP_PATH, AdminEndpoint
from aggregator.server.events import RETRY_MILLISECONDS, SessionEvents, SessionEventStore
from aggregator.server.gateway import Gateway
from aggregator.server.lean import lean_app
from aggregator.upstreams.caller import LOG_LEVEL_STATE_KEY

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(gateway: Gateway, on_ready: Callable[[], None] | None = None) -> Starlette:
    """The HTTP application serving `gateway`; its lifespan connects and closes the upstreams.

    `on_ready` runs once the app is started and every upstream's first connection attempt has settled
    (bounded by `connect_timeout`): a host that connects then sees every tool there is. Meanwhile the
    app answers (/healthz, and /readyz with 503). Without a token verifier every caller is
    unrestricted: only `--insecure-dev` builds that.
    """
    settings = gateway.settings
    security = _transport_security(settings.host)
    limits = settings.limits
    events = SessionEventStore()  # resumable SSE streams for 2025-11-25 sessions
    sessions = StreamableHTTPSessionManager(
        app=gateway.server,
        event_store=events,
        retry_interval=RETRY_MILLISECONDS,
        security_settings=security,
        max_request_body_size=limits.max_request_bytes,
        session_idle_timeout=limits.session_idle_timeout,
        max_sessions=limits.max_sessions,
    )
    sse = SseServerTransport("/messages/", security_settings=security, max_request_body_size=limits.max_request_bytes)
    sse_security = TransportSecurityMiddleware(security)
    server = gateway.server
    origin = PublicOrigin(settings.public_url, _configured_origins(settings))
    authenticator = Authenticator(gateway.verifier, origin)
    body_limits = BodyLimits.from_settings(limits)
    quiet_sdk_parse_failures()

    async def sse_stream(scope: Scope, receive: Receive, send: Send) -> None:
        # Refuse a foreign Host/Origin here: the SDK answers 421/403 too, but then raises into the server.
        if (refusal := await sse_security.validate_request(Request(scope, receive))) is not None:
            await refusal(scope, receive, send)
            return
        async with sse.connect_sse(scope, receive, send) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    settled = anyio.Event()  # every upstream's first connection attempt has settled (or connect_timeout passed)

    async def readyz(request: Request) -> JSONResponse:
        # An upstream that is not `required` is reported, never fatal: with replicas behind a load
        # balancer, one bad upstream must not take every replica out.
        ready = settled.is_set() and gateway.pool.required_connected()
        body: dict[str, Any] = {"ready": ready}
        if await operator_asks(request):
            body["upstreams"] = {
                u.name: {
                    "state": u.state.value,
                    "era": u.protocol_version,
                    "tools": len(u.tools),
                    "error": u.last_error,
                    "required": u.spec.required,
                }
                for u in gateway.pool
            }
            body["policy_error"] = gateway.guard.policy.error
            body["registry_error"] = gateway.registry.error
            if gateway.cluster is not None:  # Redis away: served from local state, so still ready
                body["cluster"] = gateway.cluster.health.details()
        return JSONResponse(body, status_code=200 if ready else 503, headers=_PRIVATE)

    async def operator_asks(request: Request) -> bool:
        """Whether /readyz may show details: the caller holds UI list_service for `all` (anyone, without auth).

        A refused token only costs the details (and a log line): the status code must stay the
        readiness a probe relies on.
        """
        if authenticator.secured and "authorization" not in request.headers:
            return False
        try:
            principal = await authenticator.authenticate(request)
        except AuthenticationError as error:
            client = request.client.host if request.client else "?"
            logger.warning(
                "auth.rejected", extra={"reason": printable(error.reason), "path": "/readyz", "client": client}
            )
            return False
        return gateway.guard.policy.current.may_administer(principal, "list_service", "all")

    async def settle() -> None:
        await gateway.pool.settle()
        settled.set()
        if on_ready is not None:
            on_ready()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway.running(), sessions.run(), anyio.create_task_group() as startup:
            startup.start_soon(settle)
            try:
                yield
            finally:
                startup.cancel_scope.cancel()

    mcp: ASGIApp = events.scoped(StreamableHTTPASGIApp(sessions), sessions)
    sharing = _session_sharing(gateway, sessions, events)
    admin = AdminEndpoint(mcp if sharing is None else sharing.wrap(mcp))  # management traffic is light: the SDK path
    if settings.lean_path:  # tools/call and tools/list below the SDK's session layers (aggregator.server.lean)
        revocations = settings.data_dir / "revoked.json" if gateway.verifier is not None else None
        mcp = lean_app(mcp, gateway.handlers, gateway.server, sessions, security, revocations)
    if sharing is not None:  # outermost: a session held by another replica is adopted before the lean path looks
        mcp = sharing.wrap(mcp)
    routes = [
        Route(MCP_PATH, mcp),
        Route(ADMIN_PATH, admin),
        Route("/sse", _AsgiEndpoint(sse_stream), methods=["GET"]),
        Mount("/messages/", app=sse.handle_post_message),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *metadata_routes(origin, settings.auth.authorization_servers),
        *validate_routes(
            gateway.verifier,
            gateway.guard,
            origin,
            BodyInspector(body_limits),
            settings.auth.authorization_servers,
            CacheMarks(settings.auth, gateway.guard.policy, settings.data_dir / REVOCATIONS),  # nginx's decision cache
        ),
        *registry_routes(authenticator, gateway.guard.policy, gateway.catalog, gateway.pool),
        *metrics_routes(
            authenticator,
            gateway.guard.policy,
            gateway.guard.metrics,
            gateway.pool,
            public=settings.metrics_public,
            cluster=gateway.cluster,
        ),
    ]
    middleware = [
        Middleware(RefusalLogMiddleware),
        Middleware(BearerAuthMiddleware, verifier=gateway.verifier, origin=origin),
        Middleware(RequestLimitsMiddleware, limits=body_limits),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class _AsgiEndpoint:
    """Marks a plain ASGI callable so Starlette's `Route` hands it the raw scope/receive/send."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


_PRIVATE = {"Cache-Control": "no-store", "Vary": "Authorization"}


def _session_sharing(
    gateway: Gateway, sessions: StreamableHTTPSessionManager, events: SessionEventStore
) -> SessionSharing | None:
    """With `cluster.redis_url`: 2025-11-25 sessions recorded in Redis, and continued by any replica."""
    if gateway.cluster is None:
        return None

    def opened(session_id: str) -> None:  # an adopted session's stream events are replayable here from now on
        events.opened(session_id, SessionEvents(events.max_events, events.max_bytes, events.budget), sessions)

    ttl = gateway.settings.limits.session_idle_timeout
    sharing = SessionSharing(gateway.cluster.sessions, sessions, gateway.server, LOG_LEVEL_STATE_KEY, ttl, opened)
    gateway.server.middleware.append(sharing.middleware)
    return sharing


def _configured_origins(settings: Settings) -> dict[str, str]:
    """Addresses besides the bound one that clients may use without `public_url`: nginx's listen address."""
    listen = settings.nginx.listen
    scheme = "https" if settings.nginx.tls_certificate is not None else "http"
    return {listen.lower(): f"{scheme}://{listen}"}


def _transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection (Host and Origin checks) for loopback binds."""
    if host not in LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
