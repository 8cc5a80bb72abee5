"""The demo upstreams, driven by the SDK client in both protocol eras.

`legacy` speaks the 2025-11-25 initialize handshake; `auto` discovers and reaches 2026-07-28. The
HTTP servers' behaviour is tested in-process (the session's `weather_url` and `echo_url`); their
command line, which announces the URL it serves, and the stdio notes server run as real processes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.types import CallToolResult, TextContent, TextResourceContents
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

from examples.servers.notes import create_server as create_notes_server
from tests.conftest import REPOSITORY, http_upstream
from tests.harness import free_port

CALL_TIMEOUT = 10.0
EXPECTED_VERSION = {"legacy": LATEST_HANDSHAKE_VERSION, "auto": LATEST_MODERN_VERSION}

pytestmark = pytest.mark.anyio
modes = pytest.mark.parametrize("mode", ["legacy", "auto"])


def _notes_process() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "examples.servers.notes"], cwd=REPOSITORY)


def _text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def _structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


# the command line


@pytest.mark.parametrize("module", ["weather", "echo"])
async def test_the_command_line_serves_the_url_it_announces(module: str) -> None:
    port = free_port()
    async with http_upstream(module, port) as (url, _):
        assert url == f"http://127.0.0.1:{port}/mcp"
        async with Client(url, mode="auto", read_timeout_seconds=CALL_TIMEOUT) as client:
            assert (await client.list_tools()).tools


# weather


@modes
async def test_weather_lists_described_tools(weather_url: str, mode: str) -> None:
    async with Client(weather_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"get_forecast", "get_current_conditions", "list_weather_alerts"}
    forecast = tools["get_forecast"]
    assert "forecast" in (forecast.description or "")
    assert forecast.input_schema["required"] == ["city"]
    assert forecast.input_schema["properties"]["city"]["description"]
    assert forecast.input_schema["properties"]["days"]["default"] == 3
    assert forecast.output_schema is not None
    assert all(tool.description for tool in tools.values())


@modes
async def test_forecast_is_structured_and_deterministic(weather_url: str, mode: str) -> None:
    async with Client(weather_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        paris = _structured(await client.call_tool("get_forecast", {"city": "Paris", "days": 5}))
        paris_again = _structured(await client.call_tool("get_forecast", {"city": "  paris ", "days": 5}))
        tokyo = _structured(await client.call_tool("get_forecast", {"city": "Tokyo"}))

    assert paris["city"] == "Paris"
    assert len(paris["days"]) == 5
    assert all(day["low_c"] <= day["high_c"] for day in paris["days"])
    assert {"date", "high_c", "low_c", "conditions"} <= set(paris["days"][0])
    assert paris_again == paris
    assert len(tokyo["days"]) == 3
    assert tokyo["days"] != paris["days"][:3]


@modes
async def test_forecast_refuses_out_of_range_days(weather_url: str, mode: str) -> None:
    async with Client(weather_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        result = await client.call_tool("get_forecast", {"city": "Paris", "days": 30})

    assert result.is_error
    assert "days" in _text(result)


@modes
async def test_current_conditions_and_alerts(weather_url: str, mode: str) -> None:
    async with Client(weather_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        now = _structured(await client.call_tool("get_current_conditions", {"city": "san francisco"}))
        forecast = _structured(await client.call_tool("get_forecast", {"city": "San Francisco", "days": 1}))
        alerts = _structured(await client.call_tool("list_weather_alerts", {"region": "California"}))

    today = forecast["days"][0]
    assert now["city"] == "San Francisco"
    assert today["low_c"] <= now["temperature_c"] <= today["high_c"]
    assert now["conditions"] == today["conditions"]
    assert alerts["region"] == "California"
    assert all(alert["headline"] and alert["severity"] for alert in alerts["alerts"])


@modes
async def test_weather_resource_and_prompt(weather_url: str, mode: str) -> None:
    async with Client(weather_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        resources = (await client.list_resources()).resources
        contents = (await client.read_resource("weather://cities")).contents
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("plan_outdoor_day", {"city": "Lisbon"})

    assert [resource.uri for resource in resources] == ["weather://cities"]
    assert isinstance(contents[0], TextResourceContents)
    assert "Paris" in {entry["city"] for entry in json.loads(contents[0].text)}
    assert [p.name for p in prompts] == ["plan_outdoor_day"]
    message = prompt.messages[0].content
    assert isinstance(message, TextContent)
    assert "Lisbon" in message.text


@modes
async def test_weather_over_legacy_sse(weather_url: str, mode: str) -> None:
    sse_url = weather_url.removesuffix("/mcp") + "/sse"
    async with Client(sse_client(sse_url), mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get_forecast", {"city": "Paris", "days": 1})

    assert "get_forecast" in tools
    assert len(_structured(result)["days"]) == 1


# echo


@modes
async def test_echo_tools(echo_url: str, mode: str) -> None:
    async with Client(echo_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {tool.name for tool in (await client.list_tools()).tools}
        echoed = await client.call_tool("echo", {"text": "héllo, wörld"})
        added = await client.call_tool("add", {"a": 2, "b": 40})

    assert tools == {"echo", "add", "slow", "fail"}
    assert _text(echoed) == "héllo, wörld"
    assert _structured(added) == {"result": 42}
    assert _text(added) == "42"


@modes
async def test_echo_fail_is_a_tool_error(echo_url: str, mode: str) -> None:
    async with Client(echo_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        result = await client.call_tool("fail", {"message": "upstream exploded"})

    assert result.is_error
    assert _text(result) == "Error executing tool fail: upstream exploded"


@modes
async def test_echo_slow_reports_progress(echo_url: str, mode: str) -> None:
    updates: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total))

    async with Client(echo_url, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        result = await client.call_tool("slow", {"seconds": 0.35}, progress_callback=on_progress)

    assert _text(result) == "Waited 0.35 s."
    assert [progress for progress, _ in updates] == [0.1, 0.2, 0.3, 0.35]
    assert {total for _, total in updates} == {0.35}


# notes (stdio)


@modes
async def test_notes_lifecycle(mode: str) -> None:
    async with Client(_notes_process(), mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {tool.name for tool in (await client.list_tools()).tools}
        groceries = _structured(
            await client.call_tool("add_note", {"title": "Groceries", "body": "Milk, eggs", "tags": ["Home", "home"]})
        )
        _structured(await client.call_tool("add_note", {"title": "Standup", "body": "Demo the gateway"}))
        listed = _structured(await client.call_tool("list_notes", {}))["result"]
        found = _structured(await client.call_tool("search_notes", {"query": "EGGS milk"}))["result"]
        everything = (await client.read_resource("notes://all")).contents
        deleted = await client.call_tool("delete_note", {"note_id": groceries["id"]})
        remaining = _structured(await client.call_tool("list_notes", {}))["result"]

    assert tools == {"add_note", "search_notes", "list_notes", "delete_note"}
    assert groceries["tags"] == ["home"]
    assert [note["title"] for note in listed] == ["Groceries", "Standup"]
    assert [note["id"] for note in found] == [groceries["id"]]
    assert isinstance(everything[0], TextResourceContents)
    assert len(json.loads(everything[0].text)) == 2
    assert not deleted.is_error
    assert groceries["id"] in _text(deleted)
    assert [note["title"] for note in remaining] == ["Standup"]


@modes
async def test_notes_unknown_ids_are_errors(mode: str) -> None:
    async with Client(create_notes_server(), mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
        note = _structured(await client.call_tool("add_note", {"title": "Keep", "body": "me"}))
        read = (await client.read_resource(f"notes://{note['id']}")).contents
        deleted = await client.call_tool("delete_note", {"note_id": "note-999"})
        with pytest.raises(MCPError):
            await client.read_resource("notes://note-999")

    assert isinstance(read[0], TextResourceContents)
    assert json.loads(read[0].text)["title"] == "Keep"
    assert deleted.is_error
    assert _text(deleted).endswith("No note with id 'note-999'. Call list_notes to see the ids that exist.")
