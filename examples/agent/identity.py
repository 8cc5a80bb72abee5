"""Who the agent is towards the gateway: a bearer token for one of two identities.

- agent identity: the agent's own OAuth2 client (client-credentials grant at the token endpoint
  that OIDC discovery names); the gateway sees the client as the principal.
- user identity: the token `mcp-aggregator login` stored for the user, refreshed when it has
  expired; the gateway sees the user (`sub`) as the principal.
"""

from __future__ import annotations

from pathlib import Path

import httpx2

from aggregator.cli.login import discover, get_token
from aggregator.errors import LoginError
from examples.agent.errors import IdentityError


async def client_credentials_token(
    http: httpx2.AsyncClient,
    issuer: str,
    client_id: str,
    client_secret: str,
    *,
    scope: str = "",
    resource: str | None = None,
) -> str:
    """An access token for the agent itself (client_secret_basic)."""
    try:
        endpoints = await discover(http, issuer)
    except LoginError as error:
        raise IdentityError(str(error)) from None
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    if resource:
        form["resource"] = resource
    try:
        response = await http.post(endpoints.token_endpoint, data=form, auth=httpx2.BasicAuth(client_id, client_secret))
        body = response.json()
    except (httpx2.HTTPError, ValueError) as error:
        raise IdentityError(
            f"The token request to {endpoints.token_endpoint} failed: {type(error).__name__}."
        ) from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(token, str):
        error_code = body.get("error", "?") if isinstance(body, dict) else "?"
        raise IdentityError(f"{endpoints.token_endpoint} refused client {client_id!r}: {error_code}.")
    return token


async def user_token(token_file: Path, http: httpx2.AsyncClient) -> str:
    """The signed-in user's access token, refreshed first when it has expired."""
    try:
        return await get_token(token_file, http=http)
    except LoginError as error:
        raise IdentityError(str(error)) from None
