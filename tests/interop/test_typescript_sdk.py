"""The official TypeScript SDK as a client of the gateway: v1 (`@modelcontextprotocol/sdk` 1.32, which
speaks up to 2025-11-25) and v2 (`@modelcontextprotocol/client` 2.3, which also speaks 2026-07-28)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from tests.harness import LiveGateway
from tests.interop.conftest import EXPORTED_TOOLS, FORECAST_ARGUMENTS
from tests.interop.node import NODE_MODULES, Finished, requires, run_node

pytestmark = [pytest.mark.anyio, requires("@modelcontextprotocol/sdk")]
SCRIPT = Path(__file__).parent / "js" / "sdk_client.mjs"
MODERN = "2026-07-28"
PROTOCOL_VERSION = {"legacy": "2025-11-25", MODERN: MODERN}
V2 = requires("@modelcontextprotocol/client")
CLIENTS = [
    pytest.param("v1", "legacy", id="sdk-v1-2025-11-25"),
    pytest.param("v2", "legacy", id="client-v2-2025-11-25", marks=V2),
    pytest.param("v2", MODERN, id="client-v2-2026-07-28", marks=V2),
]


async def run_sdk(gateway: LiveGateway, line: str, era: str, *, bearer: str) -> tuple[Finished, dict[str, Any]]:
    """List tools and call `weather__get_forecast` with the TypeScript SDK; what it reported."""
    arguments = json.dumps(FORECAST_ARGUMENTS)
    args: list[str | Path] = [SCRIPT, NODE_MODULES, line, gateway.url, era, "weather__get_forecast", arguments]
    finished = await run_node(args, env={"MCP_BEARER": bearer})
    report: dict[str, Any] = finished.last_json(finished.stdout)
    return finished, report


@pytest.mark.parametrize(("line", "era"), CLIENTS)
async def test_the_typescript_sdk_lists_and_calls_tools_through_the_gateway(
    gateway: LiveGateway, line: str, era: str, token: str, weather_url: str
) -> None:
    async with Client(weather_url) as direct:
        expected = await direct.call_tool("get_forecast", FORECAST_ARGUMENTS)
    finished, report = await run_sdk(gateway, line, era, bearer=token)
    assert finished.status == 0, finished
    assert report["protocolVersion"] == PROTOCOL_VERSION[era]
    assert (report["sessionId"] is None) == (era == MODERN), "sessions belong to the 2025-11-25 era only"
    assert set(report["tools"]) == EXPORTED_TOOLS
    assert not report["result"].get("isError")
    assert report["result"]["structuredContent"] == expected.structured_content
    assert report["result"]["content"] == [
        block.model_dump(mode="json", exclude_none=True) for block in expected.content
    ]


@pytest.mark.parametrize(("line", "era"), CLIENTS)
async def test_without_a_token_the_typescript_sdk_gets_the_challenge(gateway: LiveGateway, line: str, era: str) -> None:
    finished, report = await run_sdk(gateway, line, era, bearer="")
    assert finished.status == 1, finished
    if line == "v1":
        # v1 without an OAuth provider surfaces the status and body, not the WWW-Authenticate header.
        assert report["error"]["code"] == 401
        assert "A bearer token is required." in report["error"]["message"]
        return
    # v2 hands the 401 to its AuthProvider; the SDK's own parser read the challenge.
    metadata_url = gateway.base + "/.well-known/oauth-protected-resource/mcp"  # RFC 9728, for the /mcp resource
    assert report["challenge"] == {"status": 401, "resourceMetadataUrl": metadata_url}
    async with httpx2.AsyncClient(trust_env=False) as http:
        metadata = (await http.get(report["challenge"]["resourceMetadataUrl"])).json()
    assert metadata["resource"] == gateway.url


@V2
async def test_a_tool_result_names_the_gateway_as_the_server_that_answered(gateway: LiveGateway, token: str) -> None:
    finished, report = await run_sdk(gateway, "v2", MODERN, bearer=token)
    assert finished.status == 0, finished
    assert report["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-aggregator"
