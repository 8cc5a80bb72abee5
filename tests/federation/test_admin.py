"""The registries' admin tools and `mcp-aggregator registries`: run as the caller, permission-checked, and
nothing a caller sends becomes configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from tests.commands import run_command, run_command_in_thread
from tests.federation.conftest import DEADLINE, FakeRegistry, offers, published, serve_follower
from tests.harness import ADMIN, LiveGateway, call_structured, member_token, serve_asgi, text_of, tool_names, unchanged
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio


@dataclass
class Setup:
    registry: FakeRegistry
    follower: LiveGateway


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[Setup]:
    """A follower of one registry that publishes `weather`, with `ADMIN_SCOPES` (admins, operators, users)."""
    registry = FakeRegistry(body={"servers": [published("io.github.acme/weather", weather_url)]})
    async with serve_asgi(registry.app(), path="/v0.1/servers") as url:
        registries = {"acme": {"url": url, "on_change": "accept", "refresh": 3600}}
        directory = tmp_path_factory.mktemp("follower")
        async with serve_follower(directory, registries=registries, scopes=ADMIN_SCOPES) as follower:
            assert follower.gateway.federation is not None
            await follower.gateway.federation.refresh()
            await follower.wait_until(offers("weather", "get_forecast"), DEADLINE)
            yield Setup(registry, follower)


async def test_only_callers_with_the_permission_for_all_servers_see_or_refresh_registries(setup: Setup) -> None:
    live = setup.follower
    async with live.member("admins", path=ADMIN) as admin:
        assert {"list_registries", "refresh_registry"} <= await tool_names(admin)
        [registry] = (await call_structured(admin, "list_registries", {}))["registries"]
        assert registry["name"] == "acme" and registry["state"] == "ok"
    async with live.member("operators", path=ADMIN) as operator:  # list_service for weather only
        assert "refresh_registry" not in await tool_names(operator)
        refused = await refusal(operator, "list_registries", {})
        assert refused == "Listing the followed registries needs the list_service permission for all servers."
        services = await call_structured(operator, "list_services", {})
        assert "registries" not in services  # the registries' health is the whole gateway's
    async with live.member("users", path=ADMIN) as user:
        assert not {"list_registries", "refresh_registry"} & await tool_names(user)
        for tool in ("list_registries", "refresh_registry"):
            assert await refusal(user, tool, {}) == f"Unknown tool '{tool}'."


async def refusal(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """Why the gateway refused the call: an MCP error's message or an error result's text (never a success)."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as error:
        return error.error.message
    assert result.is_error, result.content
    return text_of(result)


ARGUMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "an unknown registry": ({"registry": "nope"}, "Unknown registry 'nope'. Did you mean 'acme'?"),
    "a URL": ({"registry": "acme", "url": "http://169.254.169.254/"}, "url: Extra inputs are not permitted"),
    "a path for a name": ({"registry": "../servers"}, "registry: String should match pattern"),
    "a new registry": ({"registries": {"evil": {"url": "http://8.8.8.8/v0.1/servers"}}}, "Extra inputs"),
    "a non-string name": ({"registry": ["acme"]}, "registry: Input should be a valid string"),
}


@pytest.mark.parametrize("case", list(ARGUMENTS))
async def test_nothing_a_caller_sends_becomes_configuration(setup: Setup, case: str) -> None:
    arguments, reason = ARGUMENTS[case]
    with unchanged(setup.follower.servers_file):
        async with setup.follower.member("admins", path=ADMIN) as admin:
            refused = await refusal(admin, "refresh_registry", arguments)
    assert reason in refused
    assert setup.follower.gateway.registry.current.registries.keys() == {"acme"}


async def test_the_cli_lists_and_refreshes_as_the_tokens_caller(setup: Setup) -> None:
    live = setup.follower
    admin_token = member_token(["admins"])
    listed = await run_command_in_thread("registries", "list", "--url", live.admin_url, "--token", admin_token)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("acme: ok  http://127.0.0.1:")
    assert "follows weather (streamable-http): io.github.acme/weather" in listed.stdout

    refreshed = await run_command_in_thread(
        "registries", "refresh", "acme", "--url", live.admin_url, "--token", admin_token
    )
    assert refreshed.returncode == 0, refreshed.stderr
    assert "acme: ok" in refreshed.stdout

    operator = await run_command_in_thread(
        "registries", "list", "--url", live.admin_url, "--token", member_token(["operators"])
    )
    assert operator.returncode == 1
    assert "needs the list_service permission for all servers" in operator.stderr


def test_the_cli_lists_the_configured_registries_without_a_gateway(tmp_path: Path) -> None:
    servers_file = tmp_path / "servers.yaml"
    servers_file.write_text(
        "registries:\n"
        "  central:\n"
        "    url: https://user:pw@registry.example.com/v0.1/servers?key=secret\n"
        "    prefix: central-\n"
        "    exclude: {tags: [experimental]}\n"
    )
    ran = run_command("registries", "list", "--servers", str(servers_file))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "central: https://registry.example.com/v0.1/servers (auth none, refresh every 300 s)",
        "  prefix: central-",
        '  exclude: {"tags":["experimental"]}',
    ]
    assert "secret" not in ran.stdout and "pw" not in ran.stdout


def test_the_cli_names_the_culprit_of_a_bad_registries_entry(tmp_path: Path) -> None:
    servers_file = tmp_path / "servers.yaml"
    servers_file.write_text("registries:\n  central:\n    url: ftp://registry.example.com/\n    refresh: 0\n")
    ran = run_command("registries", "list", "--servers", str(servers_file))
    assert ran.returncode == 2
    assert "registries.central.url: 'ftp://registry.example.com/' is not an http(s) URL" in ran.stderr
    assert "registries.central.refresh: Input should be greater than or equal to 1" in ran.stderr
