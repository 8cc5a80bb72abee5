"""The HTTP face of policy: bearer authentication on the MCP routes, 401 challenges, RFC 9728 metadata."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.errors import AuthenticationError
from aggregator.policy.principal import AuthMethod, Principal, current_principal
from aggregator.policy.tokens import TokenVerifier

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
        public_url: str | None,
        protected: tuple[str, ...] = ("/mcp", "/sse", "/messages/"),
    ) -> None:
        self._app = app
        self._verifier = verifier
        self._public_url = public_url
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
        response = challenge(Request(scope), reason, self._public_url)
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
class Authenticator:
    """What a plain HTTP route needs to know its caller: the verifier and the public URL for challenges."""

    verifier: TokenVerifier | None
    public_url: str | None

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
    request: Request, reason: str, public_url: str | None, *, path: str | None = None, metadata: str | None = None
) -> JSONResponse:
    """401 with the RFC 9728 pointer (`WWW-Authenticate`); the reason is logged and never holds the token.

    `path` and `metadata` name the protected resource when it is not the aggregated endpoint
    (nginx passthrough locations have their own metadata document).
    """
    client = request.client.host if request.client else "?"
    logger.warning("auth.rejected", extra={"reason": reason, "path": path or request.url.path, "client": client})
    metadata = metadata or metadata_url(request, public_url)
    if reason == MISSING_TOKEN:
        header = f'Bearer resource_metadata="{metadata}"'
        body = {"error": "invalid_request", "error_description": "A bearer token is required."}
    else:
        description = reason.replace('"', "'")
        header = f'Bearer error="invalid_token", error_description="{description}", resource_metadata="{metadata}"'
        body = {"error": "invalid_token", "error_description": reason}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})


def _fingerprint(scope: Scope) -> str:
    """A stand-in for the token in the SDK's session records: a hash, so the secret is kept nowhere."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return "sha256:" + hashlib.sha256(value).hexdigest()[:32]
    return "none"


def resource_url(request: Request, public_url: str | None) -> str:
    """The MCP URL clients use: the configured public URL, else this request's origin + /mcp."""
    if public_url:
        return public_url
    base = request.base_url
    return f"{base.scheme}://{base.netloc}/mcp"


def metadata_url(request: Request, public_url: str | None) -> str:
    """Where the RFC 9728 metadata for the MCP resource lives (inserted before the path, per the RFC)."""
    resource = resource_url(request, public_url)
    scheme, _, rest = resource.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}{METADATA_PATH}" + (f"/{path}" if path else "")


def metadata_routes(public_url: str | None, authorization_servers: tuple[str, ...]) -> list[Route]:
    """`/.well-known/oauth-protected-resource[/mcp]`: how a host finds where to log in (RFC 9728)."""

    async def metadata(request: Request) -> JSONResponse:
        body = {
            "resource": resource_url(request, public_url),
            "authorization_servers": list(authorization_servers),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-aggregator",
        }
        return JSONResponse(body, headers={"Cache-Control": "max-age=300"})

    return [Route(METADATA_PATH, metadata, methods=["GET"]), Route(METADATA_PATH + "/mcp", metadata, methods=["GET"])]
