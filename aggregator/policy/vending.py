"""Token vending: HS256 access tokens minted by the gateway, with mcp-gateway-registry's claims."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt

from aggregator.config.settings import AuthSettings
from aggregator.errors import AccessDeniedError, ConfigError, ConfigIssue


def mint_token(
    settings: AuthSettings,
    subject: str,
    scopes: Iterable[str],
    ttl: int,
    *,
    client_id: str | None = None,
    groups: Iterable[str] = (),
) -> tuple[str, dict[str, Any]]:
    """Sign a token with the first gateway key; returns the token and its claims.

    Claims: iss, aud, sub, scope (space-separated), exp, iat, jti, token_use, client_id (+ groups).
    """
    if not settings.gateway_keys:
        raise ConfigError([ConfigIssue("<settings>", "auth.gateway_keys", "no key to sign tokens with")])
    if not 0 < ttl <= settings.max_token_ttl:
        raise AccessDeniedError(f"A token lifetime must be between 1 and {settings.max_token_ttl} seconds.")
    key = settings.gateway_keys[0]
    assert key.secret is not None
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "scope": " ".join(sorted(set(scopes))),
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "token_use": "access",
        "client_id": client_id or subject,
    }
    if groups := sorted(set(groups)):
        claims["groups"] = groups
    token = jwt.encode(claims, key.secret.get_secret_value(), algorithm="HS256", headers={"kid": key.kid})
    return token, claims
