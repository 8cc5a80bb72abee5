"""Who is calling: the verified identity every policy decision is made about."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum


class AuthMethod(StrEnum):
    """How a principal proved who it is."""

    GATEWAY_TOKEN = "gateway-token"  # HS256, minted by this gateway
    OIDC = "oidc"  # RS256/ES256 from a configured issuer
    INSECURE_DEV = "insecure-dev"  # no verification at all (loopback, --insecure-dev)
    LOCAL = "local"  # the operator's own process (stdio, CLI)


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. `scopes` are the token's own scopes; groups map to more via scopes.yml."""

    subject: str
    client_id: str
    issuer: str
    auth_method: AuthMethod
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: int | None = None
    ancestors: tuple[str, ...] = ()
    """Ids of the tokens this one was minted from with generate_token, root first (its `parent_jti`)."""
    unrestricted: bool = field(default=False)
    """Only for --insecure-dev and local operator use: every decision says yes."""

    def describe(self) -> str:
        """A log-safe one-word identity: `subject` (or `client_id` for machine tokens)."""
        return self.subject or self.client_id


current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
"""Set by the HTTP auth layer (or the stdio runner) for the request being served."""
