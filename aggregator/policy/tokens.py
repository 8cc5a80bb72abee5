"""Bearer-token verification: gateway-minted HS256 tokens and OIDC issuers' RS/ES tokens -> `Principal`.

Every rejection raises `AuthenticationError` with a reason fit for the log and the 401 description;
no reason ever contains the token. The algorithm is pinned per issuer before any key is chosen,
so `alg: none` and HS/RS key confusion are refused up front. A token is refused when its id, or the
id of any token it was minted from (`parent_jti`, see `vending`), is on the revocation list, and
when that chain is longer than `auth.max_delegation_depth`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx2
import jwt
import jwt.types

from aggregator.config.settings import AuthSettings, OidcIssuerSettings
from aggregator.errors import AuthenticationError
from aggregator.policy.jwks import JwksCache
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.policy.revocation import RevocationList
from aggregator.policy.vending import PARENT_CLAIM, token_id_of

logger = logging.getLogger(__name__)

_LEEWAY = 30  # seconds of clock skew tolerated on exp/nbf/iat


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or refuses it with a reason."""

    def __init__(self, settings: AuthSettings, http: httpx2.AsyncClient, revoked: RevocationList) -> None:
        self._settings = settings
        self._keys = {key.kid: key.secret.get_secret_value().encode() for key in settings.gateway_keys if key.secret}
        self._issuers = {issuer.issuer: issuer for issuer in settings.oidc_issuers}
        self._jwks = {
            issuer.issuer: JwksCache(issuer.issuer, issuer.jwks_uri, http, issuer.jwks_refetch_interval)
            for issuer in settings.oidc_issuers
        }
        self._revoked = revoked

    async def verify(self, token: str) -> Principal:
        """The principal `token` proves, or `AuthenticationError` saying why not."""
        if len(token) > self._settings.max_token_bytes:
            raise AuthenticationError(f"token is too large ({len(token)} bytes)")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise AuthenticationError("unsigned tokens (alg none) are not accepted")
        issuer = unverified.get("iss")
        if issuer == self._settings.issuer:
            return self._verify_gateway_token(token, header, algorithm)
        if isinstance(issuer, str) and issuer in self._issuers:
            return await self._verify_oidc_token(token, header, algorithm, self._issuers[issuer])
        raise AuthenticationError(f"issuer {shown(issuer)} is not trusted")

    def _verify_gateway_token(self, token: str, header: Mapping[str, Any], algorithm: str) -> Principal:
        if algorithm != "HS256":
            raise AuthenticationError(f"algorithm {algorithm:.20} is not allowed for gateway tokens (HS256 only)")
        kid = header.get("kid")
        secret = self._keys.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise AuthenticationError(f"unknown key id {shown(kid)}")
        claims = _decode(
            token,
            secret,
            "HS256",
            audience=[self._settings.audience],
            issuer=self._settings.issuer,
            require=["exp", "iat", "sub", "jti"],
        )
        jti = str(claims["jti"])
        ancestors = self._ancestors(claims)
        if (revoked := self._revoked.first_revoked((jti, *ancestors))) is not None:
            if revoked == jti:
                raise AuthenticationError(f"token {jti} has been revoked")
            raise AuthenticationError(f"token {jti} was minted from token {revoked}, which has been revoked")
        return Principal(
            subject=str(claims["sub"]),
            client_id=str(claims.get("client_id") or claims["sub"]),
            issuer=self._settings.issuer,
            auth_method=AuthMethod.GATEWAY_TOKEN,
            groups=_string_set(claims.get("groups")),
            scopes=_string_set(claims.get("scope")),
            token_id=jti,
            expires_at=int(claims["exp"]),
            ancestors=ancestors,
        )

    def _ancestors(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        """The `parent_jti` chain of a gateway token (signed, so only its length is policed here)."""
        chain = claims.get(PARENT_CLAIM, [])
        if not isinstance(chain, list) or not all(isinstance(jti, str) and 0 < len(jti) <= 128 for jti in chain):
            raise AuthenticationError(f"token has a malformed {PARENT_CLAIM} claim")
        if len(chain) > self._settings.max_delegation_depth:
            raise AuthenticationError(
                f"token was minted {len(chain)} generate_token steps from its root; "
                f"at most {self._settings.max_delegation_depth} are accepted (auth.max_delegation_depth)"
            )
        return tuple(chain)

    async def _verify_oidc_token(
        self, token: str, header: Mapping[str, Any], algorithm: str, issuer: OidcIssuerSettings
    ) -> Principal:
        if algorithm not in issuer.algorithms:
            raise AuthenticationError(f"algorithm {algorithm:.20} is not allowed for issuer {issuer.issuer}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("token has no key id (kid)")
        key = await self._jwks[issuer.issuer].key(kid)
        claims = _decode(
            token,
            key,
            algorithm,
            audience=list(issuer.audiences) or None,
            issuer=issuer.issuer,
            require=["exp", "iat"],
        )
        client_id = next((str(claims[c]) for c in ("client_id", "azp", "appid", "cid") if claims.get(c)), "")
        if issuer.client_ids and client_id not in issuer.client_ids:
            raise AuthenticationError(f"client {shown(client_id)} is not accepted for issuer {issuer.issuer}")
        if issuer.token_use is not None and claims.get("token_use") != issuer.token_use:
            raise AuthenticationError(f"token_use must be {issuer.token_use!r}")
        if not issuer.audiences and not issuer.client_ids:
            raise AuthenticationError(f"issuer {issuer.issuer} has neither audiences nor client_ids configured")
        token_id = token_id_of(token, claims.get("jti"))
        if self._revoked.contains(token_id):
            raise AuthenticationError(f"token {token_id} has been revoked")
        return Principal(
            subject=str(claims.get("sub") or client_id),
            client_id=client_id,
            issuer=issuer.issuer,
            auth_method=AuthMethod.OIDC,
            groups=_string_set(claims.get(issuer.groups_claim)),
            scopes=_string_set(claims.get(issuer.scope_claim)),
            token_id=token_id,
            expires_at=int(claims["exp"]),
        )


def _decode(
    token: str, key: Any, algorithm: str, *, audience: list[str] | None, issuer: str, require: list[str]
) -> dict[str, Any]:
    options: jwt.types.Options = {"require": require, "verify_aud": audience is not None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=_LEEWAY,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationError("token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationError("token was issued for another audience") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationError("token issuer does not match") from None
    except jwt.MissingRequiredClaimError as error:
        raise AuthenticationError(f"token lacks the required claim '{error.claim}'") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationError("token signature is invalid") from None
    except jwt.PyJWTError as error:
        raise AuthenticationError(f"token is invalid ({type(error).__name__})") from None
    return claims


def shown(value: object, limit: int = 64) -> str:
    """A value from an unverified token, quoted for a refusal reason and cut to `limit` characters.

    Such values are the caller's to choose: the cut keeps a 16 KB `iss` out of logs and headers.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _string_set(value: object) -> frozenset[str]:
    """Claims carry lists either as JSON arrays or as space-separated strings."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value)
    return frozenset()
