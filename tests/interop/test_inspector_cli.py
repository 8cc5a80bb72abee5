"""The MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.12) against the gateway, in both eras.

`--protocol-era legacy` runs the 2025-11-25 `initialize` handshake; `--protocol-era modern` pins
2026-07-28 (`server/discover`) and fails if the gateway does not answer in that era.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.harness import LiveGateway
from tests.interop.conftest import EXPORTED_TOOLS, FORECAST_ARGUMENTS
from tests.interop.node import NODE_MODULES, Finished, requires, run_node

pytestmark = [pytest.mark.anyio, requires("@modelcontextprotocol/inspector")]
INSPECTOR = NODE_MODULES / ".bin" / "mcp-inspector"
ERAS = ["legacy", "modern"]
AUTH_REQUIRED_STATUS = 3  # the Inspector CLI exits with EXIT_CODES.AUTH_REQUIRED (3) on `auth_required`


async def inspect(gateway: LiveGateway, era: str, home: Path, *method: str, bearer: str | None) -> Finished:
    """One Inspector CLI run against the gateway, JSON output; without `bearer`, never start OAuth."""
    credentials = ["--header", f"Authorization: Bearer {bearer}"] if bearer else ["--stored-auth-only"]
    target = [gateway.url, "--transport", "http", "--protocol-era", era]
    # The Inspector keeps state under ~/.mcp-inspector; secrets stay in memory.
    env = {"HOME": str(home), "MCP_INSPECTOR_SECRET_STORE": "memory"}
    return await run_node([INSPECTOR, "--cli", *target, *credentials, "--format", "json", *method], env=env)


def result_of(finished: Finished) -> Any:
    assert finished.status == 0, finished
    return finished.last_json(finished.stdout)["result"]


@pytest.mark.parametrize("era", ERAS)
async def test_the_inspector_lists_the_namespaced_tools_with_their_schemas(
    gateway: LiveGateway, era: str, tmp_path: Path, token: str, weather_url: str
) -> None:
    async with Client(weather_url) as direct:
        upstream = {tool.name: tool for tool in (await direct.list_tools()).tools}
    listed = result_of(await inspect(gateway, era, tmp_path, "--method", "tools/list", bearer=token))
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(tools) == EXPORTED_TOOLS
    for name, tool in upstream.items():
        assert tools[f"weather__{name}"]["inputSchema"] == tool.input_schema
        assert tools[f"weather__{name}"]["description"] == tool.description


@pytest.mark.parametrize("era", ERAS)
async def test_the_inspector_calls_a_tool_and_gets_the_upstream_answer(
    gateway: LiveGateway, era: str, tmp_path: Path, token: str, weather_url: str
) -> None:
    async with Client(weather_url) as direct:
        expected = await direct.call_tool("get_forecast", FORECAST_ARGUMENTS)
    call = ["--method", "tools/call", "--tool-name", "weather__get_forecast", "--tool-arg", "city=Lisbon", "days=2"]
    result = result_of(await inspect(gateway, era, tmp_path, *call, bearer=token))
    assert not result.get("isError")
    assert result["structuredContent"] == expected.structured_content


@pytest.mark.parametrize("era", ERAS)
async def test_the_inspector_without_a_token_is_told_to_authenticate(
    gateway: LiveGateway, era: str, tmp_path: Path
) -> None:
    mark = gateway.log.mark()
    finished = await inspect(gateway, era, tmp_path, "--method", "tools/list", bearer=None)
    assert finished.status == AUTH_REQUIRED_STATUS, finished
    assert finished.last_json(finished.stderr)["error"]["code"] == "auth_required"
    await gateway.log.wait_for(r'auth\.rejected reason="no bearer token" path=/mcp ', after=mark)


@dataclass(frozen=True)
class Reading:
    """List one kind of upstream item, find the one whose `key` ends in `suffix`, read it, look for `expected`."""

    kind: str
    key: str
    suffix: str
    read: Callable[[str], list[str]]
    text: Callable[[Any], str]
    expected: str


READINGS = [
    pytest.param(
        Reading(
            "resources",
            "uri",
            "weather://cities",
            lambda uri: ["--method", "resources/read", "--uri", uri],
            lambda result: result["contents"][0]["text"],
            "Reykjavik",
        ),
        id="resource",
    ),
    pytest.param(
        Reading(
            "prompts",
            "name",
            "plan_outdoor_day",
            lambda name: ["--method", "prompts/get", "--prompt-name", name, "--prompt-args", "city=Oslo"],
            lambda result: result["messages"][0]["content"]["text"],
            "outdoors in Oslo",
        ),
        id="prompt",
    ),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("reading", READINGS)
async def test_the_inspector_reads_upstream_resources_and_prompts(
    gateway: LiveGateway, era: str, reading: Reading, tmp_path: Path, token: str
) -> None:
    listed = result_of(await inspect(gateway, era, tmp_path, "--method", f"{reading.kind}/list", bearer=token))
    found = [item[reading.key] for item in listed[reading.kind] if item[reading.key].endswith(reading.suffix)]
    assert len(found) == 1, listed
    result = result_of(await inspect(gateway, era, tmp_path, *reading.read(found[0]), bearer=token))
    assert reading.expected in reading.text(result)
