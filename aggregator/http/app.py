"""The ASGI application: the routes and middleware in front of one assembled `Gateway`.

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
from typing import Any

from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.http.auth import Authenticator, BearerAuthMiddleware, metadata_routes
from aggregator.http.metrics import metrics_routes
from aggregator.http.registry_api import registry_routes
from aggregator.http.validate import validate_routes
from aggregator.policy.limits import RequestLimitsMiddleware
from aggregator.server.gateway import Gateway
from aggregator.server.lean import lean_app

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    authenticator = Authenticator(gateway.verifier, settings.public_url)

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

    mcp: ASGIApp = StreamableHTTPASGIApp(sessions)
    if settings.lean_path:  # tools/call and tools/list below the SDK's session layers (aggregator.server.lean)
        revocations = settings.data_dir / "revoked.json" if gateway.verifier is not None else None
        mcp = lean_app(mcp, gateway.handlers, gateway.server, sessions, security, revocations)
    routes = [
        Route("/mcp", mcp),
        Route("/sse", _AsgiEndpoint(sse_stream), methods=["GET"]),
        Mount("/messages/", app=sse.handle_post_message),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *metadata_routes(settings.public_url, settings.auth.authorization_servers),
        *validate_routes(gateway.verifier, gateway.guard, settings.public_url, settings.auth.authorization_servers),
        *registry_routes(authenticator, gateway.guard.policy, gateway.catalog, gateway.pool),
        *metrics_routes(
            authenticator, gateway.guard.policy, gateway.guard.metrics, gateway.pool, public=settings.metrics_public
        ),
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
