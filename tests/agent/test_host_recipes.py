"""The host recipes in README.md, read from the file itself so the README cannot drift.

Each recipe is the fenced block after a `<!-- host-recipe: NAME -->` marker. Every one must parse
and have the documented shape; the ones that launch a command (Claude Desktop's) are launched, and
the ones that send a header (Claude Code's, Cursor's, VS Code's) send it, to a secured gateway.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from aggregator.cli.common import TOKEN_VARIABLE
from aggregator.cli.main import _parser
from tests.agent.conftest import AGENT, Stack
from tests.conftest import REPOSITORY
from tests.interop.node import NODE22, NODE_MODULES, redacted, requires
from tests.policy.oidc import requires_oidc_provider

pytestmark = pytest.mark.anyio
RECIPE = re.compile(r"<!-- host-recipe: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
URL = "https://mcp.example.com/mcp"
HOSTS = {
    "claude-code-oauth",
    "claude-code-header",
    "claude-desktop-stdio",
    "claude-desktop-mcp-remote",
    "cursor",
    "vscode",
}
CLAUDE_CODE = ["claude", "mcp", "add", "--transport", "http", "aggregator", URL]
CALL_DEADLINE = 30.0
MCP_REMOTE = NODE_MODULES / ".bin" / "mcp-remote"


def recipes() -> dict[str, str]:
    """Every host recipe in README.md: its name and the text of its block."""
    found = RECIPE.findall((REPOSITORY / "README.md").read_text(encoding="utf-8"))
    names = [name for name, _, _ in found]
    assert len(names) == len(set(names)), f"a recipe name is used twice: {names}"
    return {name: body for name, _, body in found}


def json_recipe(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(recipes()[name])
    return parsed


def server_entry(name: str) -> dict[str, Any]:
    config = json_recipe(name)
    assert list(config) == ["mcpServers"], name
    entry: dict[str, Any] = config["mcpServers"]["aggregator"]
    return entry


async def agent_token(stack: Stack) -> str:
    return await stack.provider.token(AGENT.client_id, AGENT.client_secret, "mcp")


def test_every_host_has_one_recipe_and_every_recipe_parses() -> None:
    found = recipes()
    assert set(found) == HOSTS
    for name, body in found.items():
        if name.startswith("claude-code"):
            assert shlex.split(body)[: len(CLAUDE_CODE)] == CLAUDE_CODE, name
        else:
            json.loads(body)


def test_the_claude_code_recipes_add_the_gateway_over_http() -> None:
    assert shlex.split(recipes()["claude-code-oauth"]) == CLAUDE_CODE
    header = shlex.split(recipes()["claude-code-header"])
    assert header == [*CLAUDE_CODE, "--header", "Authorization: Bearer $MCP_AGGREGATOR_TOKEN"]


def test_the_desktop_recipes_launch_the_documented_commands() -> None:
    stdio = server_entry("claude-desktop-stdio")
    assert stdio["command"] == "mcp-aggregator"
    arguments = _parser().parse_args(stdio["args"])
    assert arguments.command == "serve:stdio" and arguments.config == Path("/etc/mcp-aggregator/gateway.yaml")
    assert not arguments.insecure_dev
    assert list(stdio["env"]) == [TOKEN_VARIABLE]

    remote = server_entry("claude-desktop-mcp-remote")
    assert (remote["command"], remote["args"][:3]) == ("npx", ["-y", "mcp-remote", URL])
    assert remote["args"][3:] == ["--header", "Authorization:${AUTH_HEADER}"]
    assert remote["env"] == {"AUTH_HEADER": "Bearer <token>"}


def test_the_cursor_and_vscode_recipes_point_at_the_gateway_url() -> None:
    cursor = server_entry("cursor")
    assert cursor == {"url": URL, "headers": {"Authorization": "Bearer ${env:MCP_AGGREGATOR_TOKEN}"}}
    vscode = json_recipe("vscode")
    assert vscode["servers"]["aggregator"] == {
        "type": "http",
        "url": URL,
        "headers": {"Authorization": "Bearer ${input:aggregator-token}"},
    }
    (prompt,) = vscode["inputs"]
    assert (prompt["id"], prompt["type"], prompt["password"]) == ("aggregator-token", "promptString", True)


@requires_oidc_provider
async def test_the_header_recipes_send_an_authorization_the_gateway_accepts(stack: Stack) -> None:
    token = await agent_token(stack)
    cursor = server_entry("cursor")["headers"]["Authorization"]
    vscode = json_recipe("vscode")["servers"]["aggregator"]["headers"]["Authorization"]
    headers = [
        shlex.split(recipes()["claude-code-header"])[-1].replace("$MCP_AGGREGATOR_TOKEN", token),
        "Authorization: " + cursor.replace("${env:MCP_AGGREGATOR_TOKEN}", token),
        "Authorization: " + vscode.replace("${input:aggregator-token}", token),
    ]
    for header in headers:
        name, _, value = header.partition(": ")
        async with (
            httpx2.AsyncClient(headers={name: value}, trust_env=False) as http,
            Client(streamable_http_client(stack.gateway_url, http_client=http)) as client,
        ):
            assert "weather__get_forecast" in {tool.name for tool in (await client.list_tools()).tools}


@requires_oidc_provider
async def test_the_stdio_recipe_serves_the_gateway_to_a_desktop_host(stack: Stack, tmp_path: Path) -> None:
    entry = server_entry("claude-desktop-stdio")
    command = Path(sys.executable).with_name(entry["command"])  # the console script, installed with the package
    arguments = [str(stack.config) if arg.endswith("gateway.yaml") else arg for arg in entry["args"]]
    env = {name: await agent_token(stack) for name in entry["env"]}
    launch = StdioServerParameters(command=str(command), args=arguments, env=env, cwd=REPOSITORY)
    await list_and_call(launch, tmp_path / "stdio.log")


@requires_oidc_provider
@requires("mcp-remote")
async def test_the_mcp_remote_recipe_reaches_the_gateway(stack: Stack, tmp_path: Path) -> None:
    entry = server_entry("claude-desktop-mcp-remote")
    npx_arguments = entry["args"].index("mcp-remote") + 1  # `npx -y mcp-remote` is the local install here
    arguments = [stack.gateway_url if arg == URL else arg for arg in entry["args"][npx_arguments:]]
    token = await agent_token(stack)
    env = {name: value.replace("<token>", token) for name, value in entry["env"].items()}
    launch = StdioServerParameters(
        command=str(NODE22), args=[str(MCP_REMOTE), *arguments], env={**env, "HOME": str(tmp_path)}
    )
    await list_and_call(launch, tmp_path / "mcp-remote.log")


async def list_and_call(command: StdioServerParameters, log: Path) -> None:
    """What a desktop host does first: connect over stdio, list the tools, call one."""
    with log.open("w") as errors:
        try:
            with anyio.fail_after(CALL_DEADLINE):
                async with Client(stdio_client(command, errlog=errors), mode="legacy") as client:
                    names = {tool.name for tool in (await client.list_tools()).tools}
                    result = await client.call_tool("weather__get_forecast", {"city": "Lisbon", "days": 1})
        except Exception as error:
            output = redacted(log.read_text())  # noqa: ASYNC240 (a failing test's last words)
            raise AssertionError(f"{command.command} failed; its log:\n{output}") from error
    assert "weather__get_forecast" in names
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["city"] == "Lisbon"
