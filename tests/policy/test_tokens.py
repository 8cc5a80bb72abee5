"""Token verification against a real OIDC provider and gateway keys: what is accepted, and every attack refused."""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from aggregator.config.settings import AuthSettings, GatewayKeySettings, OidcIssuerSettings
from aggregator.errors import AuthenticationError
from aggregator.policy.principal import AuthMethod
from aggregator.policy.revocation import RevocationList
from aggregator.policy.tokens import TokenVerifier
from aggregator.policy.vending import mint_token
from tests.policy.oidc import (
    Audience,
    Client,
    Jwk,
    OidcProvider,
    ec_jwk,
    oidc_provider,
    requires_oidc_provider,
    rsa_jwk,
)

pytestmark = [pytest.mark.anyio, requires_oidc_provider]
AUDIENCE = "http://127.0.0.1:8000/mcp"
COGNITO = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST"
SECRET = "k" * 40


@dataclass
class Setup:
    provider: OidcProvider
    verifier: TokenVerifier
    auth: AuthSettings
    rsa: Jwk
    revoked: RevocationList


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    tmp = tmp_path_factory.mktemp("tokens")
    rsa, ec = rsa_jwk("rsa-1"), ec_jwk("ec-1")
    clients = [
        Client("alice", "alice-secret", scopes=("tools:read",), groups=("engineering",)),
        Client("robot", "robot-secret", scopes=("tools:read",), alg="ES256"),
    ]
    async with oidc_provider(tmp, clients=clients, audience=Audience(AUDIENCE), keys=[rsa, ec]) as provider:
        auth = AuthSettings(
            gateway_keys=(GatewayKeySettings(kid="g1", secret=SecretStr(SECRET)),),
            oidc_issuers=(
                OidcIssuerSettings(issuer=provider.issuer, audiences=(AUDIENCE,), algorithms=("RS256", "ES256")),
                # Cognito-shaped: no `aud`, a client allow-list, groups in `cognito:groups`, token_use pinned.
                OidcIssuerSettings(
                    issuer=COGNITO,
                    client_ids=("cognito-app",),
                    groups_claim="cognito:groups",
                    token_use="access",
                    jwks_uri=provider.jwks_uri,
                    jwks_refetch_interval=0.01,
                ),
            ),
        )
        revoked = RevocationList(tmp / "revoked.json")
        async with httpx2.AsyncClient(trust_env=False) as http:
            yield Setup(provider, TokenVerifier(auth, http, revoked), auth, rsa, revoked)


def sign(setup: Setup, claims: dict[str, Any], *, key: Jwk | None = None, headers: dict[str, Any] | None = None) -> str:
    jwk = key or setup.rsa
    private = jwt.PyJWK(jwk).key
    return jwt.encode(claims, private, algorithm=jwk["alg"], headers={"kid": jwk["kid"], **(headers or {})})


def cognito_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": COGNITO,
        "sub": "user-123",
        "client_id": "cognito-app",
        "token_use": "access",
        "scope": "openid",
        "cognito:groups": ["mcp-registry-user"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def test_tokens_from_the_oidc_provider_become_principals(setup: Setup) -> None:
    rs = await setup.verifier.verify(await setup.provider.token("alice", "alice-secret", "tools:read"))
    es = await setup.verifier.verify(await setup.provider.token("robot", "robot-secret", "tools:read"))
    assert (rs.client_id, rs.groups, rs.scopes, rs.auth_method) == (
        "alice",
        frozenset({"engineering"}),
        frozenset({"tools:read"}),
        AuthMethod.OIDC,
    )
    assert es.client_id == "robot"
    assert es.issuer == setup.provider.issuer


async def test_cognito_shaped_tokens_use_client_ids_and_cognito_groups(setup: Setup) -> None:
    principal = await setup.verifier.verify(sign(setup, cognito_claims()))
    assert principal.subject == "user-123"
    assert principal.groups == {"mcp-registry-user"}


async def test_gateway_minted_tokens_verify_and_can_be_revoked(setup: Setup) -> None:
    token, claims = mint_token(setup.auth, "ci-bot", ["a/read", "b/execute"], 60, groups=["ops"])
    principal = await setup.verifier.verify(token)
    assert principal.scopes == {"a/read", "b/execute"}
    assert principal.groups == {"ops"}
    assert principal.auth_method is AuthMethod.GATEWAY_TOKEN
    assert set(claims) >= {"iss", "aud", "sub", "scope", "exp", "iat", "jti", "token_use", "client_id"}
    setup.revoked.revoke(claims["jti"])
    with pytest.raises(AuthenticationError, match="has been revoked"):
        await setup.verifier.verify(token)
    # A revocation written by another process (the CLI) reaches a running verifier too.
    other, other_claims = mint_token(setup.auth, "ci-bot", [], 60)
    assert (await setup.verifier.verify(other)).subject == "ci-bot"
    RevocationList(setup.revoked._path).revoke(other_claims["jti"])
    with pytest.raises(AuthenticationError, match="has been revoked"):
        await setup.verifier.verify(other)


def unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{part(claims)}."


def key_confusion(setup: Setup) -> str:
    """HS256 signed with the issuer's public RSA key as the HMAC secret: the classic confusion attack."""
    public_pem = (
        jwt.PyJWK(setup.rsa)
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(cognito_claims()).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64(signature)}"


def tampered(setup: Setup) -> str:
    header, payload, signature = sign(setup, cognito_claims()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["cognito:groups"] = ["mcp-registry-admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


ATTACKS: dict[str, tuple[Callable[[Setup], str], str]] = {
    "garbled": (lambda s: "not.a.jwt", "not a well-formed JWT"),
    "empty-ish": (lambda s: "e30", "not a well-formed JWT"),
    "alg none": (lambda s: unsigned(cognito_claims()), "alg none"),
    "HS/RS key confusion": (key_confusion, "algorithm HS256 is not allowed"),
    "tampered claims": (tampered, "signature is invalid"),
    "expired": (lambda s: sign(s, cognito_claims(exp=int(time.time()) - 120)), "expired"),
    "not yet valid": (lambda s: sign(s, cognito_claims(nbf=int(time.time()) + 600)), "not valid yet"),
    "untrusted issuer": (lambda s: sign(s, cognito_claims(iss="https://evil.example")), "is not trusted"),
    "wrong client": (lambda s: sign(s, cognito_claims(client_id="other-app")), "is not accepted"),
    "id token as access token": (lambda s: sign(s, cognito_claims(token_use="id")), "token_use"),
    "unknown kid": (lambda s: sign(s, cognito_claims(), headers={"kid": "rsa-999"}), "unknown key id"),
    "wrong key for kid": (lambda s: sign(s, cognito_claims(), key={**rsa_jwk("rsa-1")}), "signature is invalid"),
    "missing exp": (lambda s: sign(s, cognito_claims(exp=None)), "required claim 'exp'"),
    "oversized": (lambda s: sign(s, cognito_claims(pad="x" * 20000)), "too large"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attacks_are_refused_with_a_reason_that_never_contains_the_token(setup: Setup, attack: str) -> None:
    make, reason = ATTACKS[attack]
    token = make(setup)
    with pytest.raises(AuthenticationError) as caught:
        await setup.verifier.verify(token)
    assert reason in caught.value.reason
    assert token not in caught.value.reason
    assert token.split(".")[-1] not in caught.value.reason or len(token.split(".")[-1]) < 8


async def test_gateway_token_attacks_are_refused(setup: Setup) -> None:
    token, _ = mint_token(setup.auth, "x", [], 60)
    other = AuthSettings(gateway_keys=(GatewayKeySettings(kid="g1", secret=SecretStr("z" * 40)),))
    forged, _ = mint_token(other, "x", ["everything"], 60)
    with pytest.raises(AuthenticationError, match="signature is invalid"):
        await setup.verifier.verify(forged)
    rotated = AuthSettings(gateway_keys=(GatewayKeySettings(kid="g2", secret=SecretStr(SECRET)),))
    with pytest.raises(AuthenticationError, match="unknown key id 'g2'"):
        await setup.verifier.verify(mint_token(rotated, "x", [], 60)[0])
    wrong_audience = AuthSettings(audience="someone-else", gateway_keys=setup.auth.gateway_keys)
    with pytest.raises(AuthenticationError, match="another audience"):
        await setup.verifier.verify(mint_token(wrong_audience, "x", [], 60)[0])
    assert (await setup.verifier.verify(token)).subject == "x"


async def test_a_rotated_provider_key_is_fetched_on_first_sight(setup: Setup, tmp_path: Path) -> None:
    new = rsa_jwk("rsa-2")
    await setup.provider.rotate([new, setup.rsa])
    principal = await setup.verifier.verify(sign(setup, cognito_claims(), key=new))
    assert principal.subject == "user-123"
