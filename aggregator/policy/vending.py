"""Token vending: HS256 access tokens minted by the gateway, with mcp-gateway-registry's claims.

Two ways in. The operator's CLI (`token mint`) calls `mint_token` with no parent. A caller's
`generate_token` calls `mint_child`, which ties the new token to the caller's own:

* its `exp` is at most the parent's (a child never outlives the token it came from);
* its `parent_jti` claim lists the ids of every ancestor, root first, so revoking any of them
  revokes it (the verifier checks the whole chain against the revocation list);
* the chain is at most `auth.max_delegation_depth` long (default 1: a minted token cannot mint).

The parent's id is its `jti`; an OIDC token without one gets `sha256:` + a digest of the token
itself (`token_id_of`), stable for that token, so it can be revoked at the gateway all the same.
RFC 8693's `act` claim is not used: it names an *actor* distinct from the subject, and
`generate_token` mints for the caller itself, so there is no other party to name.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import jwt

from aggregator.config.settings import AuthSettings
from aggregator.errors import AccessDeniedError, ConfigError, ConfigIssue
from aggregator.policy.principal import Principal

PARENT_CLAIM = "parent_jti"


def mint_token(
    settings: AuthSettings,
    subject: str,
    scopes: Iterable[str],
    ttl: int,
    *,
    client_id: str | None = None,
    groups: Iterable[str] = (),
    not_after: int | None = None,
    ancestors: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """Sign a token with the first gateway key; returns the token and its claims.

    Claims: iss, aud, sub, scope (space-separated), exp, iat, jti, token_use, client_id (+ groups,
    + `parent_jti` when `ancestors` are given). `exp` is `ttl` seconds from now, but never later
    than `not_after`.
    """
    if not settings.gateway_keys:
        raise ConfigError([ConfigIssue("<settings>", "auth.gateway_keys", "no key to sign tokens with")])
    if not 0 < ttl <= settings.max_token_ttl:
        raise AccessDeniedError(f"A token lifetime must be between 1 and {settings.max_token_ttl} seconds.")
    key = settings.gateway_keys[0]
    assert key.secret is not None
    now = int(time.time())
    expires = now + ttl if not_after is None else min(now + ttl, not_after)
    if expires <= now:
        raise AccessDeniedError("The token you are minting from has expired; there is no lifetime left to give.")
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "scope": " ".join(sorted(set(scopes))),
        "iat": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
        "token_use": "access",
        "client_id": client_id or subject,
    }
    if groups := sorted(set(groups)):
        claims["groups"] = groups
    if ancestors:
        claims[PARENT_CLAIM] = list(ancestors)
    token = jwt.encode(claims, key.secret.get_secret_value(), algorithm="HS256", headers={"kid": key.kid})
    return token, claims


def mint_child(
    settings: AuthSettings, parent: Principal, scopes: Iterable[str], ttl: int
) -> tuple[str, dict[str, Any]]:
    """A token for `parent`'s own subject, bound to `parent`'s token: clipped `exp`, chain, depth limit.

    Raises `AccessDeniedError` when the parent may not mint (depth reached, no token id to chain to).
    The unrestricted development principal (`--insecure-dev`) has no token; it mints like the CLI.
    """
    if parent.token_id is None:
        if not parent.unrestricted:
            raise AccessDeniedError(
                "Your credential carries no token id, so a token minted from it could not be revoked with it."
            )
        return mint_token(settings, parent.subject, scopes, ttl, client_id=parent.client_id)
    ancestors = (*parent.ancestors, parent.token_id)
    limit = settings.max_delegation_depth
    if len(ancestors) > limit:
        if limit == 0:
            raise AccessDeniedError("Minting tokens is turned off on this gateway (auth.max_delegation_depth is 0).")
        depth = len(parent.ancestors)
        raise AccessDeniedError(
            f"Your token was itself minted by generate_token ({depth} step{'s' * (depth != 1)} from its root), "
            f"and auth.max_delegation_depth is {limit}: it may not mint another token."
        )
    return mint_token(
        settings,
        parent.subject,
        scopes,
        ttl,
        client_id=parent.client_id,
        not_after=parent.expires_at,
        ancestors=ancestors,
    )


def token_id_of(token: str, jti: object) -> str:
    """The id a token is revoked and chained by: its `jti`, else a digest of the token itself."""
    if isinstance(jti, str | int) and not isinstance(jti, bool) and str(jti):
        return str(jti)
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]
