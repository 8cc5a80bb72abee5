"""The gateway end to end: real upstreams on every transport, real clients in both protocol eras."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client

from aggregator.server.edge import UPSTREAM_UNAVAILABLE
from tests.conftest import REPOSITORY
from tests.harness import connected, serve_gateway, serve_upstream, text_of

pytestmark = pytest.mark.anyio
EVERYTHING = REPOSITORY / "tools" / "node_modules" / ".bin" / "mcp-server-everything"
NODE22 = REPOSITORY / "tools" / "node22"
PAGED = REPOSITORY / "tests" / "servers" / "paged.py"
NOTES = "examples.servers.notes"
MODES = ["legacy", "auto"]
ERA = {"legacy": "2025-11-25", "auto": "2026-07-28"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Stack:
    gateway_url: str
    weather_url: str
    echo_url: str
    servers_file: Path


def servers_config(weather_url: str, echo_url: str) -> dict[str, Any]:
    servers: dict[str, Any] = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "echo": {"transport": "sse", "url": echo_url.removesuffix("/mcp") + "/sse", "timeout": 2},
        "notes": {
            "transport": "stdio",
            "command": sys.executable,
            "args": ["-m", "examples.servers.notes"],
            "cwd": str(REPOSITORY),
        },
        "time": {"transport": "stdio", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
        "paged": {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(REPOSITORY / "tests" / "servers" / "paged.py")],
        },
        "down": {"transport": "streamable-http", "url": f"http://127.0.0.1:{closed_port()}/mcp", "timeout": 1},
    }
    if EVERYTHING.exists():
        servers["everything"] = {"transport": "stdio", "command": str(NODE22), "args": [str(EVERYTHING), "stdio"]}
    return {"servers": servers}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("gateway")
    async with serve_upstream("weather") as weather_url, serve_upstream("echo") as echo_url:
        servers = servers_config(weather_url, echo_url)["servers"]
        async with serve_gateway(directory, servers=servers, secured=False) as live:
            await live.wait_until(connected(*(name for name in servers if name != "down")))
            yield Stack(live.url, weather_url, echo_url, live.servers_file)


@pytest.mark.parametrize("mode", MODES)
async def test_one_endpoint_lists_every_upstream_tool_namespaced(stack: Stack, mode: str) -> None:
    async with Client(stack.gateway_url, mode=mode) as client:
        assert client.protocol_version == ERA[mode]
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert {"weather__get_forecast", "echo__echo", "notes__add_note", "time__get_current_time"} <= set(names)
    assert [n for n in names if n.startswith("paged__")] == [f"paged__tool_{i:02d}" for i in range(25)]
    if EVERYTHING.exists():
        assert "everything__echo" in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mode", MODES)
async def test_tools_keep_their_descriptions_and_schemas(stack: Stack, mode: str) -> None:
    async with Client(stack.weather_url, mode=mode) as direct:
        upstream = {tool.name: tool for tool in (await direct.list_tools()).tools}
    async with Client(stack.gateway_url, mode=mode) as client:
        through = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, tool in upstream.items():
        exported = through[f"weather__{name}"]
        assert exported.model_dump(exclude={"name"}) == tool.model_dump(exclude={"name"})


@pytest.mark.parametrize("mode", MODES)
async def test_calls_reach_each_transport_and_answer_as_directly(stack: Stack, mode: str) -> None:
    arguments = {"city": "Lisbon", "days": 2}
    async with Client(stack.weather_url, mode=mode) as direct:
        expected = await direct.call_tool("get_forecast", arguments)
    async with Client(stack.gateway_url, mode=mode) as client:
        forecast = await client.call_tool("weather__get_forecast", arguments)
        echoed = await client.call_tool("echo__echo", {"text": "over SSE"})
        added = await client.call_tool("notes__add_note", {"title": "gw", "body": "via stdio"})
        now = await client.call_tool("time__get_current_time", {"timezone": "Asia/Tokyo"})
        paged = await client.call_tool("paged__tool_24", {})
    assert forecast.structured_content == expected.structured_content
    assert forecast.content == expected.content
    assert text_of(echoed) == "over SSE"
    assert not added.is_error and "gw" in text_of(added)
    assert json.loads(text_of(now))["timezone"] == "Asia/Tokyo"
    assert text_of(paged) == "tool_24 called"


@pytest.mark.skipif(not EVERYTHING.exists(), reason="tools/node_modules missing: run `make setup`")
async def test_the_public_everything_server_works_through_the_gateway(stack: Stack) -> None:
    async with Client(stack.gateway_url) as client:
        result = await client.call_tool("everything__echo", {"message": "hello everything"})
    assert "hello everything" in text_of(result)


async def test_an_unknown_tool_is_named_with_the_closest_names(stack: Stack) -> None:
    async with Client(stack.gateway_url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("weather__get_forcast", {"city": "Oslo"})
    assert caught.value.code == types.INVALID_PARAMS
    assert caught.value.message == "Unknown tool 'weather__get_forcast'. Did you mean 'weather__get_forecast'?"


async def test_a_tool_error_result_passes_through_unchanged(stack: Stack) -> None:
    async with Client(stack.echo_url) as direct:
        expected = await direct.call_tool("fail", {"message": "disk full"})
    async with Client(stack.gateway_url) as client:
        result = await client.call_tool("echo__fail", {"message": "disk full"})
    assert result.is_error
    assert result.content == expected.content


async def test_a_slow_upstream_times_out_with_an_error_naming_it(stack: Stack) -> None:
    async with Client(stack.gateway_url) as client:
        with anyio.fail_after(10), pytest.raises(MCPError) as caught:
            await client.call_tool("echo__slow", {"seconds": 30})
        # The shared session to that upstream still serves other calls.
        assert text_of(await client.call_tool("echo__echo", {"text": "still here"})) == "still here"
    assert caught.value.code == types.REQUEST_TIMEOUT
    assert caught.value.message == "Upstream 'echo' did not answer tools/call 'slow' within 2 s."


async def test_progress_reaches_the_caller(stack: Stack) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(stack.gateway_url) as client:
        result = await client.call_tool("echo__slow", {"seconds": 0.3}, progress_callback=on_progress)
    assert text_of(result) == "Waited 0.3 s."
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.3)


async def test_an_unreachable_upstream_is_reported_and_delays_nothing(stack: Stack) -> None:
    async with httpx2.AsyncClient() as http:
        ready = await http.get(stack.gateway_url.removesuffix("/mcp") + "/readyz")
        alive = await http.get(stack.gateway_url.removesuffix("/mcp") + "/healthz")
    assert alive.status_code == 200
    # Only upstreams marked `required: true` decide readiness; the others are reported.
    assert ready.status_code == 200
    upstreams = ready.json()["upstreams"]
    assert upstreams["down"]["state"] == "unhealthy"
    assert "ConnectError" in upstreams["down"]["error"]
    assert upstreams["weather"] == {
        "state": "healthy",
        "era": "2026-07-28",
        "tools": 3,
        "error": None,
        "required": False,
    }
    async with Client(stack.gateway_url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("down__anything", {})
    assert caught.value.code == UPSTREAM_UNAVAILABLE
    assert caught.value.message.startswith("Upstream 'down' is unavailable: ConnectError")


async def test_legacy_sse_clients_are_served_at_sse(stack: Stack) -> None:
    async with Client(sse_client(stack.gateway_url.removesuffix("/mcp") + "/sse"), mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("weather__get_current_conditions", {"city": "Oslo"})
    assert "weather__get_forecast" in names
    assert not result.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_hosts_that_launch_commands_use_stdio(stack: Stack, mode: str) -> None:
    command = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aggregator", "stdio", "--insecure-dev", "--servers", str(stack.servers_file)],
        cwd=REPOSITORY,
        env={"MCP_AGGREGATOR_DATA_DIR": str(stack.servers_file.parent / f"stdio-{mode}")},  # not the repository's
    )
    async with Client(command, mode=mode) as client:
        assert client.protocol_version == ERA[mode]
        # The stdio gateway answers once each upstream's first connection attempt has settled.
        assert "notes__list_notes" in {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("notes__list_notes", {})
    assert not result.is_error


async def test_fastmcp_client_works_through_the_gateway(stack: Stack) -> None:
    from fastmcp import Client as FastMCPClient

    async with FastMCPClient(stack.gateway_url) as client:
        tools = await client.list_tools()
        result = await client.call_tool("echo__add", {"a": 2, "b": 40})
    assert "echo__add" in {tool.name for tool in tools}
    assert result.structured_content == {"result": 42}
