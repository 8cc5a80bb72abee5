"""Who is calling: the verified identity every policy decision is made about."""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

from aggregator.errors import AuthenticationError

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 control characters, DEL, and lone surrogates (only a hand-made JSON string holds one)."""


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

    def __post_init__(self) -> None:
        """Refuse (`AuthenticationError`) an identity holding a control character, once, at the edge.

        A principal's strings reach logs, audit records, error messages and the identity headers
        sent upstream on connections every caller shares; no legitimate identity holds CR, LF, NUL
        or another control character, so a token carrying one is refused rather than escaped at
        each of those places. The reason names the field and the character, never the value.
        """
        fields: dict[str, Iterable[str]] = {
            "subject": (self.subject,),
            "client id": (self.client_id,),
            "issuer": (self.issuer,),
            "token id": (self.token_id or "",),
            "groups": self.groups,
            "scopes": self.scopes,
        }
        for name, values in fields.items():
            for value in values:
                if (found := _UNSAFE.search(value)) is not None:
                    kind = "a lone surrogate" if found.group() >= "\ud800" else "a control character"
                    raise AuthenticationError(
                        f"the token's {name} holds U+{ord(found.group()):04X} at position {found.start()}, "
                        f"{kind}; identities with control characters are refused"
                    )


current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
"""Set by the HTTP auth layer (or the stdio runner) for the request being served."""
