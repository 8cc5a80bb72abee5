"""The registry read API in the official MCP registry format, so standard tooling can list what the gateway offers.

    GET /v0.1/servers                                  ServerList; paginated (cursor, limit), filtered (search, version)
    GET /v0.1/servers/{serverName}/versions            ServerList of the one version the gateway serves
    GET /v0.1/servers/{serverName}/versions/{version}  ServerResponse; `latest` or the exact version
    GET /v0.1/openapi.json                             the OpenAPI description of these routes

Each upstream is a `server.json` (schema 2025-12-11) named `io.github.mcp-aggregator/<server>`. Its one
remote is the gateway's aggregated MCP endpoint: a per-server passthrough is not guaranteed to
exist. What the gateway knows of it (transport, state, callable tools, tags, exported prefix) is
under the registry-managed `_meta` key `io.github.mcp-aggregator/gateway`.

Callers authenticate as on /mcp. A caller sees a server when it may call at least one of its tools
or holds the UI permission `list_service` for it; any other server is answered with the same 404
as one that does not exist. CORS lets any origin GET, without credentials.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from aggregator.catalog.catalog import Catalog
from aggregator.errors import AuthenticationError
from aggregator.http.auth import Authenticator, challenge, resource_url
from aggregator.http.registry_openapi import openapi_document
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.registry.models import exported_prefix
from aggregator.server.handlers import SERVER_VERSION
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.upstream import Upstream

logger = logging.getLogger(__name__)

NAMESPACE = "io.github.mcp-aggregator"
GATEWAY_META = f"{NAMESPACE}/gateway"
OFFICIAL_META = "io.modelcontextprotocol.registry/official"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
DEFAULT_LIMIT = 30
MAX_LIMIT = 100
_DESCRIPTION_LIMIT = 100  # server.json allows at most 100 characters
_NO_STORE = {"Cache-Control": "no-store", "Vary": "Authorization"}

Handler = Callable[[Request, Principal], Awaitable[Response]]
_RouteT = TypeVar("_RouteT", Route, Mount)


def registry_routes(
    authenticator: Authenticator, policy: PolicyHolder, catalog: Catalog, pool: UpstreamPool
) -> list[BaseRoute]:
    """`/v0.1/...`, wrapped in CORS (GET from any origin, no credentials)."""
    api = _RegistryApi(authenticator, policy, catalog, pool)
    routes = [
        Route("/servers", api.authenticated(api.list_servers), methods=["GET"]),
        Route("/servers/{name:path}/versions", api.authenticated(api.list_versions), methods=["GET"]),
        Route("/servers/{name:path}/versions/{version}", api.authenticated(api.get_version), methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/{rest:path}", api.not_found, methods=["GET"]),  # a JSON 404, as documented
    ]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "OPTIONS"],
        allow_headers=["Authorization"],
        expose_headers=["WWW-Authenticate"],
        max_age=600,
    )
    return [_any_character(Mount("/v0.1", routes=[_any_character(r) for r in routes], middleware=[cors]))]


def _any_character(route: _RouteT) -> _RouteT:
    """Let path parameters hold any decoded character: Starlette's patterns stop at a newline (%0A)."""
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


class _RegistryApi:
    def __init__(
        self, authenticator: Authenticator, policy: PolicyHolder, catalog: Catalog, pool: UpstreamPool
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._catalog = catalog
        self._pool = pool

    def authenticated(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                principal = await self._authenticator.authenticate(request)
            except AuthenticationError as error:
                return challenge(request, error.reason, self._authenticator.origin)
            return await handler(request, principal)

        return endpoint

    async def list_servers(self, request: Request, principal: Principal) -> Response:
        parameters = request.query_params
        try:
            limit = _limit(parameters.get("limit"))
        except ValueError as error:
            return _error(400, str(error))
        search = (parameters.get("search") or "").lower()
        version = parameters.get("version")
        visible = self._visible(principal)
        names = [
            name
            for name in sorted(visible)
            if search in registry_name(name).lower() and version in (None, "", "latest", SERVER_VERSION)
        ]
        cursor = parameters.get("cursor")
        start = bisect_right(names, _local_name(cursor) or cursor) if cursor else 0
        page = names[start : start + limit]
        metadata: dict[str, Any] = {"count": len(page)}
        if start + limit < len(names):
            metadata["nextCursor"] = registry_name(page[-1])
        servers = [self._describe(request, *visible[name]) for name in page]
        return JSONResponse({"servers": servers, "metadata": metadata}, headers=_NO_STORE)

    async def list_versions(self, request: Request, principal: Principal) -> Response:
        found = self._visible(principal).get(_local_name(request.path_params["name"]) or "")
        if found is None:
            return _error(404, "Server not found")
        body = {"servers": [self._describe(request, *found)], "metadata": {"count": 1}}
        return JSONResponse(body, headers=_NO_STORE)

    async def get_version(self, request: Request, principal: Principal) -> Response:
        found = self._visible(principal).get(_local_name(request.path_params["name"]) or "")
        if found is None:
            return _error(404, "Server not found")
        if request.path_params["version"] not in ("latest", SERVER_VERSION):
            return _error(404, "Server version not found")
        return JSONResponse(self._describe(request, *found), headers=_NO_STORE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(), headers={"Cache-Control": "max-age=300"})

    async def not_found(self, request: Request) -> Response:
        return _error(404, "Not found")

    def _visible(self, principal: Principal) -> dict[str, tuple[Upstream, int]]:
        """Servers the principal may see, each with how many of its tools the principal may call."""
        policy = self._policy.current
        callable_tools: Counter[str] = Counter(
            entry.upstream
            for entry in self._catalog.tools()
            if policy.allows(principal, entry.upstream, "tools/call", entry.original_name)
        )
        return {
            upstream.name: (upstream, callable_tools[upstream.name])
            for upstream in self._pool
            if callable_tools[upstream.name] or policy.may_administer(principal, "list_service", upstream.name)
        }

    def _describe(self, request: Request, upstream: Upstream, tools: int) -> dict[str, Any]:
        remote = resource_url(request, self._authenticator.origin)
        return server_response(upstream, tools, remote, secured=self._authenticator.secured)


def server_response(upstream: Upstream, tools: int, remote: str, *, secured: bool) -> dict[str, Any]:
    """One upstream as a registry `ServerResponse`: `server.json` plus registry-managed `_meta`."""
    spec = upstream.spec
    transport: dict[str, Any] = {"type": "streamable-http", "url": remote}
    if secured:
        transport["headers"] = [
            {
                "name": "Authorization",
                "description": "Bearer token for the gateway (Bearer <token>).",
                "isRequired": True,
                "isSecret": True,
            }
        ]
    server = {
        "$schema": SCHEMA_URL,
        "name": registry_name(upstream.name),
        "description": _description(spec.description, upstream.name),
        "version": SERVER_VERSION,
        "remotes": [transport],
    }
    gateway = {
        "server": upstream.name,
        "prefix": exported_prefix(upstream.name, spec),
        "transport": spec.transport,
        "enabled": spec.enabled,
        "state": upstream.state.value,
        "protocolVersion": upstream.protocol_version,
        "tools": tools,
        "tags": list(spec.tags),
    }
    return {"server": server, "_meta": {OFFICIAL_META: {"status": "active", "isLatest": True}, GATEWAY_META: gateway}}


def registry_name(server: str) -> str:
    """The reverse-DNS name of a registered server in the registry API."""
    return f"{NAMESPACE}/{server}"


def _local_name(name: str | None) -> str | None:
    """The registered name for a registry name (or a bare registered name); None if not ours."""
    if not name:
        return None
    local = name.removeprefix(f"{NAMESPACE}/")
    return None if "/" in local else local


def _description(description: str, server: str) -> str:
    text = " ".join(description.split()) or f"MCP server '{server}', served through mcp-aggregator."
    return text if len(text) <= _DESCRIPTION_LIMIT else text[: _DESCRIPTION_LIMIT - 1] + "…"


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {value!r}.")
    return limit


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)
