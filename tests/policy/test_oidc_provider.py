"""The OIDC test harness itself: a real provider issues JWT access tokens that pyjwt verifies via JWKS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest

from tests.policy.oidc import (
    Audience,
    Client,
    OidcProvider,
    TokenRequestError,
    ec_jwk,
    oidc_provider,
    requires_oidc_provider,
    rsa_jwk,
)

pytestmark = [pytest.mark.anyio, requires_oidc_provider]

GATEWAY = "http://127.0.0.1:8000/mcp"
OTHER_RESOURCE = "https://elsewhere.example/mcp"
ALICE = Client("alice", "alice-secret", scopes=("tools:read", "tools:call"), groups=("engineering", "oncall"))
ROBOT = Client("robot", "robot-secret", scopes=("tools:read",), groups=("automation",), alg="ES256")
AUDIENCES = [Audience(GATEWAY, alg="RS256", ttl_seconds=120), Audience(OTHER_RESOURCE, alg="ES256")]


async def verified_claims(provider: OidcProvider, token: str, audience: str) -> dict[str, Any]:
    """Verify `token` the way the gateway will: discovery's jwks_uri, key chosen by `kid`, pyjwt."""
    keys = jwt.PyJWKClient(provider.jwks_uri, cache_keys=False)
    signing_key = await anyio.to_thread.run_sync(keys.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token, signing_key, algorithms=["RS256", "ES256"], audience=audience, issuer=provider.issuer
    )
    return claims


@pytest.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    keys = [rsa_jwk("rsa-1"), ec_jwk("ec-1")]
    async with oidc_provider(
        tmp_path_factory.mktemp("oidc"), clients=[ALICE, ROBOT], audience=AUDIENCES, keys=keys
    ) as running:
        yield running


async def test_discovery_publishes_issuer_token_endpoint_and_public_jwks(provider: OidcProvider) -> None:
    assert provider.issuer.startswith("http://127.0.0.1:")
    assert provider.metadata["issuer"] == provider.issuer
    assert provider.jwks_uri.startswith(provider.issuer)
    assert provider.token_endpoint.startswith(provider.issuer)
    assert "client_credentials" in provider.metadata["grant_types_supported"]

    published = (await provider.jwks())["keys"]
    assert {(key["kid"], key["alg"]) for key in published} == {("rsa-1", "RS256"), ("ec-1", "ES256")}
    assert all("d" not in key for key in published)


@pytest.mark.parametrize(
    ("client", "scope", "resource", "alg", "kid"),
    [
        pytest.param(ALICE, "tools:read tools:call", None, "RS256", "rsa-1", id="audience-default-rs256"),
        pytest.param(ROBOT, "tools:read", GATEWAY, "ES256", "ec-1", id="client-override-es256"),
        pytest.param(ALICE, "tools:read", OTHER_RESOURCE, "ES256", "ec-1", id="audience-es256"),
    ],
)
async def test_access_tokens_are_jwts_that_verify_against_the_jwks(
    provider: OidcProvider, client: Client, scope: str, resource: str | None, alg: str, kid: str
) -> None:
    token = await provider.token(client.client_id, client.client_secret, scope, resource=resource)

    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"], header["typ"]) == (alg, kid, "at+jwt")
    audience = resource or GATEWAY
    claims = await verified_claims(provider, token, audience)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == audience
    assert claims["client_id"] == claims["sub"] == client.client_id
    assert claims["scope"] == scope
    assert claims["groups"] == list(client.groups or ())
    assert claims["iat"] <= time.time() < claims["exp"]
    if audience == GATEWAY:
        assert claims["exp"] - claims["iat"] == 120


async def test_provider_refuses_scopes_and_resources_outside_the_configuration(provider: OidcProvider) -> None:
    with pytest.raises(TokenRequestError) as refused_scope:
        await provider.token(ROBOT.client_id, ROBOT.client_secret, "tools:call")
    assert refused_scope.value.error == "invalid_scope"

    with pytest.raises(TokenRequestError) as refused_resource:
        await provider.token(ALICE.client_id, ALICE.client_secret, "tools:read", resource="https://unknown.example/")
    assert refused_resource.value.error == "invalid_target"

    with pytest.raises(TokenRequestError) as refused_secret:
        await provider.token(ALICE.client_id, "wrong", "tools:read")
    assert refused_secret.value.error == "invalid_client"


async def test_rotation_signs_with_the_new_kid_and_retires_the_old(tmp_path: Path) -> None:
    async with oidc_provider(tmp_path, clients=[ALICE, ROBOT], audience=GATEWAY, keys=[rsa_jwk("rsa-1")]) as provider:
        old_token = await provider.token(ALICE.client_id, ALICE.client_secret, "tools:read")
        # PyJWT refetches a JWKS for an unknown kid at most once per `cooldown_duration` (30 s by
        # default), counted from the last fetch; with the default this test would wait 30 s.
        keys = jwt.PyJWKClient(provider.jwks_uri, cooldown_duration=0)
        await anyio.to_thread.run_sync(keys.get_signing_key_from_jwt, old_token)

        await provider.rotate([rsa_jwk("rsa-2"), ec_jwk("ec-2")])

        published = {key["kid"] for key in (await provider.jwks())["keys"]}
        assert published == {"rsa-2", "ec-2"}
        for client, kid in [(ALICE, "rsa-2"), (ROBOT, "ec-2")]:
            token = await provider.token(client.client_id, client.client_secret, "tools:read")
            assert jwt.get_unverified_header(token)["kid"] == kid
            # The cached client has never seen this kid: it must refetch the JWKS to verify.
            signing_key = await anyio.to_thread.run_sync(keys.get_signing_key_from_jwt, token)
            assert signing_key.key_id == kid
        with pytest.raises(jwt.PyJWKClientError, match="rsa-1"):
            await anyio.to_thread.run_sync(keys.get_signing_key_from_jwt, old_token)
