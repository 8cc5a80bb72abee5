"""The gateway authenticates to upstreams with their own credentials, never the caller's token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import LiveGateway, call_structured, connected, serve_gateway, serve_mcp, token_for
from tests.policy.oidc import Audience, oidc_provider, requires_oidc_provider, rsa_jwk
from tests.policy.oidc import Client as OidcClient
from tests.servers import headers

pytestmark = [pytest.mark.anyio, requires_oidc_provider]
UPSTREAM_AUDIENCE = "urn:upstream:headers"
SCOPES = 'all:\n- server: "*"\n  methods: [tools/call]\n  tools: ["*"]\n'
ENVIRONMENT = {
    "UP_TOKEN": "static-upstream-token",
    "UP_CLIENT_SECRET": "gateway-secret",
    # AWS cannot be reached here: static credentials stand in for boto3's chain; the signing is real.
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "session-token-example",
}


async def whoami(live: LiveGateway, bearer: str, tool: str) -> dict[str, Any]:
    async with live.client(token=bearer) as client:
        return await call_structured(client, tool, {})


async def test_each_upstream_gets_its_own_credential_and_only_the_identity_headers_it_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    clients = [OidcClient("gateway-app", "gateway-secret", scopes=("upstream",))]
    async with (
        oidc_provider(tmp_path, clients=clients, audience=Audience(UPSTREAM_AUDIENCE), keys=[rsa_jwk("u1")]) as idp,
        serve_mcp(headers.create_server()) as url,
    ):
        servers = {
            "static": {"transport": "streamable-http", "url": url, "auth": {"type": "bearer", "token_env": "UP_TOKEN"}},
            "oauth": {
                "transport": "streamable-http",
                "url": url,
                "auth": {
                    "type": "oauth2-client-credentials",
                    "token_url": idp.token_endpoint,
                    "client_id": "gateway-app",
                    "client_secret_env": "UP_CLIENT_SECRET",
                    "scope": "upstream",
                },
                "identity_headers": ["X-User", "X-Client-Id", "X-Scopes", "X-Auth-Method", "X-Tool-Name"],
            },
            "aws": {
                "transport": "streamable-http",
                "url": url,
                "auth": {"type": "aws-sigv4", "service": "execute-api", "region": "eu-west-1"},
            },
            "plain": {"transport": "streamable-http", "url": url},
        }
        async with serve_gateway(tmp_path / "gateway", servers=servers, scopes=SCOPES) as live:
            await live.wait_until(connected(*servers))
            caller = token_for("alice", scopes=["all"], ttl=300)

            static = await whoami(live, caller, "static__whoami")
            assert static == {"authorization": "Bearer static-upstream-token"}

            oauth = await whoami(live, caller, "oauth__whoami")
            upstream_token = oauth.pop("authorization").removeprefix("Bearer ")
            claims = jwt.decode(upstream_token, options={"verify_signature": False})
            assert (claims["client_id"], claims["aud"], claims["iss"]) == ("gateway-app", UPSTREAM_AUDIENCE, idp.issuer)
            assert oauth == {
                "x-user": "alice",
                "x-client-id": "alice",
                "x-scopes": "all",
                "x-auth-method": "gateway-token",
                "x-tool-name": "whoami",
            }

            aws = await whoami(live, caller, "aws__whoami")
            assert re.match(
                r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, "
                r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$",
                aws["authorization"],
            )
            assert aws["x-amz-security-token"] == "session-token-example"

            assert await whoami(live, caller, "plain__whoami") == {}
        for secret in (caller, "static-upstream-token", "gateway-secret", upstream_token):
            assert secret not in live.log.output
