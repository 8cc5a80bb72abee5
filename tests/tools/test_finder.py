"""intelligent_tool_finder and discovery mode through a secured gateway: relevant first, nothing forbidden."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from mcp import Client, MCPError

from tests.harness import LiveGateway, call_structured, serve_gateway

pytestmark = pytest.mark.anyio
SCOPES = """
finder-users: [{server: mcpgw, methods: [tools/list, tools/call], tools: [intelligent_tool_finder]}]
echo-only: [{server: echo, methods: [tools/list, tools/call], tools: ["*"]}]
everything: [{server: "*", methods: [tools/list, tools/call], tools: ["*"]}]
"""
MODEL_DEADLINE = 120.0


@pytest.fixture(scope="module")
async def finding(
    tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url, "description": "Weather forecasts"},
        "echo": {"transport": "streamable-http", "url": echo_url, "tags": ["test"]},
    }
    async with serve_gateway(tmp_path_factory.mktemp("finder"), servers=servers, scopes=SCOPES) as live:
        # The first search opens the index (full-text at once); wait until the model has embedded it.
        async with connect(live, ["finder-users"]) as client:
            first = await find(client, "anything")
        assert first["mode"] == "full-text"
        assert "keyword search" in first["note"]
        await live.log.wait_for(r"finder\.ready .*mode=hybrid", MODEL_DEADLINE)
        yield live


def connect(live: LiveGateway, scopes: list[str], path: str = "/mcp") -> AbstractAsyncContextManager[Client]:
    """A client holding exactly `scopes`."""
    return live.client(f"user-{'-'.join(scopes)}", scopes=scopes, path=path)


async def find(client: Client, query: str, **arguments: Any) -> dict[str, Any]:
    return await call_structured(client, "intelligent_tool_finder", {"query": query, **arguments})


async def test_relevant_tools_come_first_with_their_schemas(finding: LiveGateway) -> None:
    async with connect(finding, ["finder-users", "everything"]) as client:
        forecast = await find(client, "multi-day weather forecast for Lisbon", top_k=3)
        adding = await find(client, "add two integers together", top_k=3)
    assert forecast["tools"][0]["name"] == "weather__get_forecast"
    assert forecast["tools"][0]["input_schema"]["required"] == ["city"]
    assert forecast["tools"][0]["callable"] is True
    assert adding["tools"][0]["name"] == "echo__add"
    assert forecast["mode"] == "hybrid"
    assert forecast["note"] is None


async def test_the_encoder_graph_is_kept_in_the_data_dir_for_the_next_start(finding: LiveGateway) -> None:
    kept = list((finding.gateway.settings.data_dir / "encoder").glob("*.onnx"))
    assert len(kept) == 1 and kept[0].stat().st_size > 1_000_000  # the exported graph, not a stub
    assert not list(kept[0].parent.glob("*.tmp"))  # written whole: nothing half-written beside it


async def test_a_restricted_caller_never_sees_a_forbidden_tool(finding: LiveGateway) -> None:
    async with connect(finding, ["finder-users", "echo-only"]) as client:
        for query in ("weather__get_forecast", "get_forecast weather forecast city", "weather alerts", "anything"):
            found = await find(client, query, top_k=10)
            names = {tool["name"] for tool in found["tools"]}
            assert names <= {"echo__echo", "echo__add", "echo__slow", "echo__fail"}, (query, names)
        # A caller with few permissions still gets k results.
        assert len((await find(client, "weather forecast", top_k=4))["tools"]) == 4
        assert {t["name"] for t in (await find(client, "numbers", servers=["weather"]))["tools"]} == set()


async def test_filters_by_server_and_tag(finding: LiveGateway) -> None:
    async with connect(finding, ["finder-users", "everything"]) as client:
        by_tag = await find(client, "weather forecast", tags=["test"], top_k=10)
        by_server = await find(client, "echo text back", servers=["weather"], top_k=10)
    assert {tool["server"] for tool in by_tag["tools"]} == {"echo"}
    assert {tool["server"] for tool in by_server["tools"]} == {"weather"}


async def test_the_finder_is_deny_by_default(finding: LiveGateway) -> None:
    async with connect(finding, ["echo-only"]) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        with pytest.raises(MCPError, match="Unknown tool 'intelligent_tool_finder'"):
            await client.call_tool("intelligent_tool_finder", {"query": "echo"})
    assert "intelligent_tool_finder" not in listed


async def test_discovery_mode_lists_three_tools_and_keeps_every_check(finding: LiveGateway) -> None:
    async with connect(finding, ["finder-users", "echo-only"], "/mcp?tools=discover") as client:
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
