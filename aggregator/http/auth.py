"""The HTTP face of policy: bearer authentication on the MCP routes, 401 challenges, RFC 9728 metadata.

The URLs the gateway hands out (the challenge's `resource_metadata`, the metadata's `resource`, the
registry's remotes) come from `PublicOrigin`: the configured `public_url`, else an address the
gateway knows (the one the connection came in on, or a configured nginx listen address). They are
never copied from the request's Host header, so a caller cannot make the gateway name another site.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.errors import AuthenticationError
from aggregator.policy.limits import mark_refusal_logged, printable
from aggregator.policy.principal import AuthMethod, Principal, current_principal
from aggregator.policy.tokens import TokenVerifier
from aggregator.server.endpoints import ADMIN_PATH, MCP_PATH

logger = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-protected-resource"
INSECURE_DEV_PRINCIPAL = Principal(
    subject="insecure-dev",
    client_id="insecure-dev",
    issuer="insecure-dev",
    auth_method=AuthMethod.INSECURE_DEV,
    unrestricted=True,
)


class BearerAuthMiddleware:
    """Authenticates every request to a protected path; others pass through untouched.

    A verified principal is put where the MCP SDK binds sessions to it (`scope["user"]`) and in
    `current_principal` for the handlers. Without a verifier (`--insecure-dev`), every caller is
    the unrestricted development principal.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier | None,
        origin: PublicOrigin,
        protected: tuple[str, ...] = (MCP_PATH, ADMIN_PATH, "/sse", "/messages/"),
    ) -> None:
        self._app = app
        self._verifier = verifier
        self._origin = origin
        self._protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not any(
            path == p or (p.endswith("/") and path.startswith(p)) for p in self._protected
        ):
            await self._app(scope, receive, send)
            return
        if self._verifier is None:
            principal = INSECURE_DEV_PRINCIPAL
        else:
            try:
                principal = await self._verifier.verify(bearer_token(scope.get("headers", ())))
            except AuthenticationError as error:
                await self._challenge(scope, receive, send, error.reason)
                return
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=_fingerprint(scope),
                client_id=principal.client_id,
                scopes=sorted(principal.scopes),
                expires_at=principal.expires_at,
                subject=principal.subject,
                claims={"iss": principal.issuer},
            )
        )
        reset = current_principal.set(principal)
        try:
            await self._app(scope, receive, send)
        finally:
            current_principal.reset(reset)

    async def _challenge(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        response = challenge(Request(scope), reason, self._origin)
        await response(scope, receive, send)


MISSING_TOKEN = "no bearer token"


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The bearer token of a request's raw headers; `AuthenticationError` when there is none."""
    for name, value in headers:
        if name.lower() == b"authorization":
            header: str = bytes(value).decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise AuthenticationError("the Authorization header is not a bearer token")
    raise AuthenticationError(MISSING_TOKEN)


@dataclass(frozen=True, slots=True)
class PublicOrigin:
    """Where clients reach this gateway, for the URLs it hands out.

    With `public_url`, always that URL's origin. Without it, a request whose Host names one of the
    `known` addresses (`host:port` -> origin; the configured nginx listen address) gets that origin;
    any other request gets the origin of the local address its connection came in on.
    """

    public_url: str | None
    known: Mapping[str, str] = field(default_factory=dict)

    def origin(self, scope: Scope) -> str:
        """`scheme://host[:port]` as clients of this request should write it."""
        if self.public_url:
            scheme, _, rest = self.public_url.partition("://")
            return f"{scheme}://{rest.partition('/')[0]}"
        for name, value in scope.get("headers", ()):
            if name == b"host":
                known = self.known.get(bytes(value).decode("latin-1").strip().lower())
                if known is not None:
                    return known
                break
        return _bound_origin(scope)

    def mcp_url(self, scope: Scope) -> str:
        """The aggregated MCP endpoint's URL."""
        return self.public_url or f"{self.origin(scope)}{MCP_PATH}"

    def admin_url(self, scope: Scope) -> str:
        """The management endpoint's URL: beside the aggregated one (`<mcp url>/admin`), as nginx routes it."""
        return self.mcp_url(scope).rstrip("/") + ADMIN_PATH.removeprefix(MCP_PATH)


def _bound_origin(scope: Scope) -> str:
    """The origin of the local address the connection came in on (what the gateway is bound to)."""
    server = scope.get("server")
    if not server or server[1] is None:
        return "http://localhost"
    host, port = server
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Authenticator:
    """What a plain HTTP route needs to know its caller: the verifier, and the origin for challenges."""

    verifier: TokenVerifier | None
    origin: PublicOrigin

    @property
    def secured(self) -> bool:
        """Whether callers must present a token (false only under `--insecure-dev`)."""
        return self.verifier is not None

    async def authenticate(self, request: Request) -> Principal:
        """The caller of `request`; `AuthenticationError` when its token is missing or refused."""
        return await authenticate(request, self.verifier)


async def authenticate(request: Request, verifier: TokenVerifier | None) -> Principal:
    """The caller of a plain HTTP route; without a verifier (`--insecure-dev`), the development principal."""
    if verifier is None:
        return INSECURE_DEV_PRINCIPAL
    return await verifier.verify(bearer_token(request.scope.get("headers", ())))


def challenge(
    request: Request, reason: str, origin: PublicOrigin, *, path: str | None = None, metadata: str | None = None
) -> JSONResponse:
    """401 with the RFC 9728 pointer (`WWW-Authenticate`); the reason is logged and never holds the token.

    `path` and `metadata` name the protected resource when it is not the aggregated endpoint
    (nginx passthrough locations have their own metadata document). The reason may quote what
    the caller sent: in the header it is reduced to printable ASCII (`printable`).
    """
    client = request.client.host if request.client else "?"
    shown_path = printable(path or request.url.path)
    logger.warning("auth.rejected", extra={"reason": printable(reason), "path": shown_path, "client": client})
    mark_refusal_logged(request.scope)
    metadata = metadata or metadata_url(request, origin)
    if reason == MISSING_TOKEN:
        header = f'Bearer resource_metadata="{metadata}"'
        body = {"error": "invalid_request", "error_description": "A bearer token is required."}
    else:
        description = printable(reason)
        header = f'Bearer error="invalid_token", error_description="{description}", resource_metadata="{metadata}"'
        body = {"error": "invalid_token", "error_description": reason}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})


def _fingerprint(scope: Scope) -> str:
    """A stand-in for the token in the SDK's session records: a hash, so the secret is kept nowhere."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return "sha256:" + hashlib.sha256(value).hexdigest()[:32]
    return "none"


def resource_url(request: Request, origin: PublicOrigin) -> str:
    """The URL clients use for the MCP endpoint `request` came to (see `PublicOrigin`): /mcp/admin or /mcp."""
    if request.scope.get("path") in (ADMIN_PATH, METADATA_PATH + ADMIN_PATH):
        return origin.admin_url(request.scope)
    return origin.mcp_url(request.scope)


def metadata_url(request: Request, origin: PublicOrigin) -> str:
    """Where the RFC 9728 metadata for the MCP resource lives (inserted before the path, per the RFC)."""
    resource = resource_url(request, origin)
    scheme, _, rest = resource.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}{METADATA_PATH}" + (f"/{path}" if path else "")


def metadata_routes(origin: PublicOrigin, authorization_servers: tuple[str, ...]) -> list[Route]:
    """`/.well-known/oauth-protected-resource[/mcp[/admin]]`: how a host finds where to log in (RFC 9728)."""

    async def metadata(request: Request) -> JSONResponse:
        body = {
            "resource": resource_url(request, origin),
            "authorization_servers": list(authorization_servers),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-aggregator",
        }
        return JSONResponse(body, headers={"Cache-Control": "max-age=300"})

    paths = (METADATA_PATH, METADATA_PATH + MCP_PATH, METADATA_PATH + ADMIN_PATH)
    return [Route(path, metadata, methods=["GET"]) for path in paths]
