"""A real OpenID provider for policy tests: npm `oidc-provider` on loopback, issuing JWT access tokens.

`oidc_provider(...)` runs `tools/oidc/provider.mjs` (see its header for the config format) with
keys, audiences and clients the test chooses, and stops it when the block ends. Tokens come from
the client-credentials grant; keys rotate in place with `OidcProvider.rotate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import REPOSITORY, STARTUP_DEADLINE
from tests.processes import RunningProcess, run_process

TOOLS = REPOSITORY / "tools"
PROVIDER_SCRIPT = TOOLS / "oidc" / "provider.mjs"
REQUEST_TIMEOUT = 10.0

Jwk: TypeAlias = dict[str, Any]
SigningAlgorithm: TypeAlias = Literal["RS256", "ES256"]

requires_oidc_provider = pytest.mark.skipif(
    not (TOOLS / "node_modules" / "oidc-provider").is_dir() or not (TOOLS / "node_modules" / "node").is_dir(),
    reason="tools/node_modules/oidc-provider (or the Node 22 package) is missing; run 'npm ci' in tools/",
)


def rsa_jwk(kid: str) -> Jwk:
    """A fresh RSA-2048 private JWK for RS256 signing, named `kid`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**RSAAlgorithm.to_jwk(key, as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}


def ec_jwk(kid: str) -> Jwk:
    """A fresh EC P-256 private JWK for ES256 signing, named `kid`."""
    key = ec.generate_private_key(ec.SECP256R1())
    return {**ECAlgorithm.to_jwk(key, as_dict=True), "kid": kid, "alg": "ES256", "use": "sig"}


def public_jwk(jwk: Jwk) -> Jwk:
    """`jwk` without its private members, as a JWKS publishes it."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    return {name: value for name, value in jwk.items() if name not in private}


@dataclass(frozen=True)
class Audience:
    """A resource server tokens can be issued for: `identifier` becomes the token's `aud`."""

    identifier: str
    alg: SigningAlgorithm = "RS256"
    ttl_seconds: int = 300


@dataclass(frozen=True)
class Client:
    """A confidential client of the client-credentials grant.

    `scopes` are the scopes it may request; `groups` (Keycloak style) and `claims` land in its
    access tokens; `alg`, if set, overrides the audience's signing algorithm for its tokens.
    """

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()
    groups: tuple[str, ...] | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    alg: SigningAlgorithm | None = None

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": " ".join(self.scopes),
            "claims": self.claims,
        }
        if self.groups is not None:
            config["groups"] = list(self.groups)
        if self.alg is not None:
            config["alg"] = self.alg
        return config


class TokenRequestError(Exception):
    """Raised when the provider refuses a token request; carries its OAuth `error` code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"Token request failed with HTTP {status}: {error} ({description})")
        self.status = status
        self.error = error


class OidcProvider:
    """A running provider: its discovered endpoints, a token helper and in-place key rotation."""

    def __init__(
        self, process: RunningProcess, http: httpx2.AsyncClient, metadata: dict[str, Any], config_path: Path
    ) -> None:
        self.process = process
        self.metadata = metadata
        self.issuer: str = metadata["issuer"]
        self.jwks_uri: str = metadata["jwks_uri"]
        self.token_endpoint: str = metadata["token_endpoint"]
        self._http = http
        self._config_path = config_path

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    async def token(self, client_id: str, client_secret: str, scope: str = "", resource: str | None = None) -> str:
        """An access token (a JWT) from the client-credentials grant; without `resource`, the first audience."""
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        response = await self._http.post(
            self.token_endpoint, data=form, auth=httpx2.BasicAuth(client_id, client_secret)
        )
        body = response.json()
        if response.status_code != 200:
            raise TokenRequestError(response.status_code, body.get("error", "?"), body.get("error_description", ""))
        token: str = body["access_token"]
        return token

    async def jwks(self) -> dict[str, Any]:
        """The published JWKS, as a verifier fetches it."""
        response = await self._http.get(self.jwks_uri)
        response.raise_for_status()
        keys: dict[str, Any] = response.json()
        return keys

    async def rotate(self, keys: Sequence[Jwk]) -> None:
        """Replace the signing keys without a restart; the first key of each algorithm signs from now on.

        Keep an old key later in `keys` to model an overlap window, or leave it out to retire it.
        """
        response = await self._http.post(f"{self.issuer}/__test/keys", json={"keys": list(keys)})
        if response.status_code != 200:
            raise AssertionError(f"Key rotation was refused: {response.text}")
        config = json.loads(self._config_path.read_text())
        config["keys"] = list(keys)
        self._config_path.write_text(json.dumps(config))


@asynccontextmanager
async def oidc_provider(
    tmp_path: Path,
    *,
    clients: Sequence[Client],
    audience: str | Audience | Sequence[Audience],
    keys: Sequence[Jwk],
) -> AsyncIterator[OidcProvider]:
    """Run an OpenID provider on a free loopback port until the block ends.

    `audience` is one resource identifier or several `Audience`s (the first is the default);
    `keys` are private JWKs (see `rsa_jwk`, `ec_jwk`), the first of each algorithm signing.
    """
    if isinstance(audience, str):
        audiences: Sequence[Audience] = [Audience(audience)]
    elif isinstance(audience, Audience):
        audiences = [audience]
    else:
        audiences = audience
    config = {
        "keys": list(keys),
        "resources": [{"audience": each.identifier, "alg": each.alg, "ttl": each.ttl_seconds} for each in audiences],
        "clients": [client.to_config() for client in clients],
    }
    config_path = tmp_path / "oidc-provider.json"
    config_path.write_text(json.dumps(config))
    argv = [str(TOOLS / "node22"), str(PROVIDER_SCRIPT), "--config", str(config_path), "--port", "0"]
    async with (
        run_process(argv, cwd=REPOSITORY) as process,
        httpx2.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False) as http,
    ):
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        issuer = line.split()[1]
        response = await http.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        yield OidcProvider(process, http, response.json(), config_path)
