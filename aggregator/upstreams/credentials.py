"""How the gateway authenticates to an upstream: its own credential, never the caller's token.

`UpstreamAuth` is an `httpx2.Auth` on the upstream's HTTP client. It adds the configured
credential (static bearer, OAuth2 client-credentials token, or AWS SigV4 signature) and, where a
server's config asks for them, the caller's identity as plain headers (`X-User`, `X-Scopes`, ...),
read from the request context of the call being forwarded and encoded as `identity` describes.

The auth flow runs inside the upstream's shared transport, where an exception would end the
session of every caller; so it never raises for a caller's values (the encoding is total), and
`check_request` refuses what cannot be sent in the caller's own task, before the request is queued.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar

import anyio
import httpx2

from aggregator.errors import UpstreamUnavailableError
from aggregator.policy.principal import Principal, current_principal
from aggregator.registry.models import (
    BearerAuthSettings,
    ClientCredentialsAuthSettings,
    IdentityHeader,
    SigV4AuthSettings,
    UpstreamAuthSettings,
)
from aggregator.upstreams.identity import check_identity, identity_values

current_tool: ContextVar[str | None] = ContextVar("current_tool", default=None)
"""The upstream tool being called, for the `X-Tool-Name` identity header."""

_REFRESH_MARGIN = 60.0  # refresh a client-credentials token this many seconds before it expires


class UpstreamAuth(httpx2.Auth):
    """Signs or authorises each request to one upstream, and adds identity headers where configured."""

    requires_request_body = True  # SigV4 signs the body

    def __init__(
        self,
        upstream: str,
        settings: UpstreamAuthSettings | None,
        identity_headers: tuple[IdentityHeader, ...],
        scopes_of: Callable[[Principal], frozenset[str]],
    ) -> None:
        self._upstream = upstream
        self._identity_headers = identity_headers
        self._scopes_of = scopes_of
        self._tokens: ClientCredentials | None = None
        self._settings = settings
        if isinstance(settings, ClientCredentialsAuthSettings):
            self._tokens = ClientCredentials(upstream, settings)

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        self._add_identity(request)
        await self._authorise(request, refresh=False)
        response = yield request
        if response.status_code == 401 and self._tokens is not None:
            await self._authorise(request, refresh=True)
            yield request

    async def _authorise(self, request: httpx2.Request, *, refresh: bool) -> None:
        settings = self._settings
        if isinstance(settings, BearerAuthSettings):
            assert settings.token is not None
            request.headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        elif self._tokens is not None:
            request.headers["Authorization"] = f"Bearer {await self._tokens.token(refresh=refresh)}"
        elif isinstance(settings, SigV4AuthSettings):
            _sign_sigv4(request, settings)

    def check_request(self) -> None:
        """Refuse, in the caller's task, a request whose identity headers could not be sent (too long)."""
        check_identity(self._upstream, self._identity())

    def _add_identity(self, request: httpx2.Request) -> None:
        request.headers.update(self._identity())

    def _identity(self) -> dict[str, str]:
        """The configured identity headers of the current caller, encoded; none without a caller."""
        principal = current_principal.get()
        if not self._identity_headers or principal is None:
            return {}
        tool = current_tool.get()
        values = identity_values(principal, self._scopes_of(principal), self._upstream, (tool,) if tool else ())
        return {header: values[header] for header in self._identity_headers}

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.aclose()


class ClientCredentials:
    """An OAuth2 client-credentials token for one upstream, fetched once and reused until near expiry."""

    def __init__(self, upstream: str, settings: ClientCredentialsAuthSettings) -> None:
        self._upstream = upstream
        self._settings = settings
        self._http = httpx2.AsyncClient(trust_env=False, timeout=15)
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = anyio.Lock()

    async def token(self, *, refresh: bool = False) -> str:
        async with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._expires_at - _REFRESH_MARGIN:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        settings = self._settings
        assert settings.client_secret is not None
        form = {"grant_type": "client_credentials"}
        if settings.scope:
            form["scope"] = settings.scope
        if settings.audience:
            form["audience"] = settings.audience
        try:
            response = await self._http.post(
                settings.token_url,
                data=form,
                auth=httpx2.BasicAuth(settings.client_id, settings.client_secret.get_secret_value()),
            )
            body = response.json()
        except (httpx2.HTTPError, ValueError) as error:
            raise UpstreamUnavailableError(self._upstream, f"token endpoint failed: {type(error).__name__}") from None
        if response.status_code != 200 or "access_token" not in body:
            error_code = body.get("error", response.status_code) if isinstance(body, dict) else response.status_code
            raise UpstreamUnavailableError(self._upstream, f"token endpoint refused the client: {error_code}")
        self._token = str(body["access_token"])
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300))

    async def aclose(self) -> None:
        await self._http.aclose()


def _sign_sigv4(request: httpx2.Request, settings: SigV4AuthSettings) -> None:
    """Sign with botocore's SigV4 using boto3's credential chain (env, profile, role)."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.Session(profile_name=settings.profile).get_credentials()
    if credentials is None:
        raise UpstreamUnavailableError(str(request.url.host), "no AWS credentials found for SigV4 signing")
    signed_headers = {"host": request.url.netloc.decode(), "content-type": request.headers.get("content-type", "")}
    aws_request = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=signed_headers)
    SigV4Auth(credentials.get_frozen_credentials(), settings.service, settings.region).add_auth(aws_request)
    for name, value in aws_request.headers.items():
        request.headers[name] = value
