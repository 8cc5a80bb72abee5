"""intelligent_tool_finder and discovery mode through a secured gateway: relevant first, nothing forbidden."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.policy.vending import mint_token
from tests.conftest import gateway_process, http_upstream, wait_connected
from tests.processes import RunningProcess

pytestmark = pytest.mark.anyio
SECRET = "f" * 40
AUTH = AuthSettings(gateway_keys=(GatewayKeySettings(kid="k", secret=SecretStr(SECRET)),))
SCOPES = """
finder-users:
- server: mcpgw
  methods: [tools/list, tools/call]
  tools: [intelligent_tool_finder]
echo-only:
- server: echo
  methods: [tools/list, tools/call]
  tools: ["*"]
everything:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
"""


@dataclass
class Finding:
    url: str
    gateway: RunningProcess


@pytest.fixture(scope="module")
async def finding(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Finding]:
    directory = tmp_path_factory.mktemp("finder")
    async with http_upstream("weather") as (weather_url, _), http_upstream("echo") as (echo_url, _):
        servers = {
            "weather": {"transport": "streamable-http", "url": weather_url, "description": "Weather forecasts"},
            "echo": {"transport": "streamable-http", "url": echo_url, "tags": ["test"]},
        }
        (directory / "servers.yaml").write_text(yaml.safe_dump({"servers": servers}))
        (directory / "scopes.yml").write_text(SCOPES)
        config = {
            "servers_file": "servers.yaml",
            "scopes_file": "scopes.yml",
            "data_dir": "data",
            "auth": {"gateway_keys": [{"kid": "k", "secret_env": "FINDER_TEST_KEY"}]},
        }
        (directory / "gateway.yaml").write_text(json.dumps(config))
        async with gateway_process(
            directory / "servers.yaml",
            "--config",
            str(directory / "gateway.yaml"),
            env={"FINDER_TEST_KEY": SECRET},
            insecure_dev=False,
        ) as (url, gateway):
            for name in servers:
                await wait_connected(gateway, name)
            # The first search opens the index (full-text at once); wait until the model has embedded it.
            async with connect(url, ["finder-users"]) as client:
                first = await find(client, "anything")
            assert first["mode"] == "full-text"
            assert "keyword search" in first["note"]
            await gateway.wait_for(re.compile(r"finder\.ready .*mode=hybrid"), 120)
            yield Finding(url, gateway)


@asynccontextmanager
async def connect(url: str, scopes: list[str]) -> AsyncIterator[Client]:
    bearer = mint_token(AUTH, f"user-{'-'.join(scopes)}", scopes, 600)[0]
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def find(client: Client, query: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("intelligent_tool_finder", {"query": query, **arguments})
    assert not result.is_error, result.content
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def test_relevant_tools_come_first_with_their_schemas(finding: Finding) -> None:
    async with connect(finding.url, ["finder-users", "everything"]) as client:
        forecast = await find(client, "multi-day weather forecast for Lisbon", top_k=3)
        adding = await find(client, "add two integers together", top_k=3)
    assert forecast["tools"][0]["name"] == "weather__get_forecast"
    assert forecast["tools"][0]["input_schema"]["required"] == ["city"]
    assert forecast["tools"][0]["callable"] is True
    assert adding["tools"][0]["name"] == "echo__add"
    assert forecast["mode"] == "hybrid"
    assert forecast["note"] is None


async def test_a_restricted_caller_never_sees_a_forbidden_tool(finding: Finding) -> None:
    async with connect(finding.url, ["finder-users", "echo-only"]) as client:
        for query in ("weather__get_forecast", "get_forecast weather forecast city", "weather alerts", "anything"):
            found = await find(client, query, top_k=10)
            names = {tool["name"] for tool in found["tools"]}
            assert names <= {"echo__echo", "echo__add", "echo__slow", "echo__fail"}, (query, names)
        # A caller with few permissions still gets k results.
        assert len((await find(client, "weather forecast", top_k=4))["tools"]) == 4
        assert {t["name"] for t in (await find(client, "numbers", servers=["weather"]))["tools"]} == set()


async def test_filters_by_server_and_tag(finding: Finding) -> None:
    async with connect(finding.url, ["finder-users", "everything"]) as client:
        by_tag = await find(client, "weather forecast", tags=["test"], top_k=10)
        by_server = await find(client, "echo text back", servers=["weather"], top_k=10)
    assert {tool["server"] for tool in by_tag["tools"]} == {"echo"}
    assert {tool["server"] for tool in by_server["tools"]} == {"weather"}


async def test_the_finder_is_deny_by_default(finding: Finding) -> None:
    async with connect(finding.url, ["echo-only"]) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        with pytest.raises(MCPError, match="Unknown tool 'intelligent_tool_finder'"):
            await client.call_tool("intelligent_tool_finder", {"query": "echo"})
    assert "intelligent_tool_finder" not in listed


async def test_discovery_mode_lists_three_tools_and_keeps_every_check(finding: Finding) -> None:
    async with connect(finding.url + "?tools=discover", ["finder-users", "echo-only"]) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == {
            "intelligent_tool_finder",
            "describe_tool",
            "call_tool",
        }
        added = await client.call_tool("call_tool", {"name": "echo__add", "arguments": {"a": 20, "b": 22}})
        assert added.structured_content == {"result": 42}
        described = await client.call_tool("describe_tool", {"name": "echo__add"})
        assert described.structured_content is not None
        assert described.structured_content["input_schema"]["required"] == ["a", "b"]
        with pytest.raises(MCPError, match="Unknown tool 'weather__get_forecast'"):
            await client.call_tool("call_tool", {"name": "weather__get_forecast", "arguments": {"city": "Oslo"}})
        with pytest.raises(MCPError, match="Unknown tool 'weather__get_forecast'"):
            await client.call_tool("describe_tool", {"name": "weather__get_forecast"})
