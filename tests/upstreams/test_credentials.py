"""The gateway authenticates to upstreams with their own credentials, never the caller's token."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.policy.vending import mint_token
from tests.conftest import REPOSITORY, STARTUP_DEADLINE, gateway_process, wait_connected
from tests.policy.oidc import Audience, oidc_provider, requires_oidc_provider, rsa_jwk
from tests.policy.oidc import Client as OidcClient
from tests.processes import run_process

pytestmark = [pytest.mark.anyio, requires_oidc_provider]
SECRET = "q" * 40
AUTH = AuthSettings(gateway_keys=(GatewayKeySettings(kid="g1", secret=SecretStr(SECRET)),))
UPSTREAM_AUDIENCE = "urn:upstream:headers"


@asynccontextmanager
async def headers_upstream() -> AsyncIterator[str]:
    argv = [sys.executable, "tests/servers/headers.py", "--host", "127.0.0.1", "--port", "0"]
    async with run_process(argv, cwd=REPOSITORY) as process:
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        yield line.split()[1]


async def whoami(url: str, bearer: str, tool: str) -> dict[str, Any]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool(tool, {})
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def test_each_upstream_gets_its_own_credential_and_only_the_identity_headers_it_asks_for(
    tmp_path: Path,
) -> None:
    clients = [OidcClient("gateway-app", "gateway-secret", scopes=("upstream",))]
    async with (
        oidc_provider(tmp_path, clients=clients, audience=Audience(UPSTREAM_AUDIENCE), keys=[rsa_jwk("u1")]) as idp,
        headers_upstream() as url,
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
        (tmp_path / "servers.yaml").write_text(json.dumps({"servers": servers}))
        (tmp_path / "scopes.yml").write_text('all:\n- server: "*"\n  methods: [tools/call]\n  tools: ["*"]\n')
        config = tmp_path / "gateway.yaml"
        config.write_text(
            json.dumps(
                {
                    "scopes_file": "scopes.yml",
                    "data_dir": "data",
                    "auth": {"gateway_keys": [{"kid": "g1", "secret_env": "GW_KEY"}]},
                }
            )
        )
        env = {
            "GW_KEY": SECRET,
            "UP_TOKEN": "static-upstream-token",
            "UP_CLIENT_SECRET": "gateway-secret",
            # AWS cannot be reached here: static credentials stand in for boto3's chain; the signing is real.
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "AWS_SESSION_TOKEN": "session-token-example",
        }
        async with gateway_process(tmp_path / "servers.yaml", "--config", str(config), env=env, insecure_dev=False) as (
            gateway_url,
            gateway,
        ):
            for name in servers:
                await wait_connected(gateway, name)
            caller = mint_token(AUTH, "alice", ["all"], 300)[0]

            static = await whoami(gateway_url, caller, "static__whoami")
            assert static == {"authorization": "Bearer static-upstream-token"}

            oauth = await whoami(gateway_url, caller, "oauth__whoami")
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

            aws = await whoami(gateway_url, caller, "aws__whoami")
            assert re.match(
                r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, "
                r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$",
                aws["authorization"],
            )
            assert aws["x-amz-security-token"] == "session-token-example"

            assert await whoami(gateway_url, caller, "plain__whoami") == {}
        for secret in (caller, "static-upstream-token", "gateway-secret", upstream_token):
            assert secret not in gateway.output
