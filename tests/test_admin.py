"""Managing the gateway through its own MCP tools, as a real principal, against real upstreams."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import yaml
from mcp import Client, MCPError
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.policy.vending import mint_token
from aggregator.registry.models import load_servers
from tests.conftest import gateway_process, http_upstream, wait_connected
from tests.policies import ADMIN_SCOPES
from tests.processes import RunningProcess

pytestmark = pytest.mark.anyio
SECRET = "a" * 40
AUTH = AuthSettings(gateway_keys=(GatewayKeySettings(kid="k", secret=SecretStr(SECRET)),))


@dataclass
class Managed:
    url: str
    gateway: RunningProcess
    servers_file: Path
    echo_url: str


@pytest.fixture(scope="module")
async def managed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Managed]:
    directory = tmp_path_factory.mktemp("admin")
    async with http_upstream("weather") as (weather_url, _), http_upstream("echo") as (echo_url, _):
        servers = {"weather": {"transport": "streamable-http", "url": weather_url}}
        (directory / "servers.yaml").write_text(yaml.safe_dump({"servers": servers}))
        (directory / "scopes.yml").write_text(ADMIN_SCOPES)
        config = {
            "servers_file": "servers.yaml",
            "scopes_file": "scopes.yml",
            "data_dir": "data",
            "servers_reload_interval": 0.2,
            "rate_limit_per_second": 0,
            "admin_allowed_networks": ["127.0.0.0/8"],  # registrations reach the loopback echo upstream
            "auth": {"gateway_keys": [{"kid": "k", "secret_env": "ADMIN_TEST_KEY"}]},
        }
        (directory / "gateway.yaml").write_text(json.dumps(config))
        async with gateway_process(
            directory / "servers.yaml",
            "--config",
            str(directory / "gateway.yaml"),
            env={"ADMIN_TEST_KEY": SECRET},
            insecure_dev=False,
        ) as (url, gateway):
            await wait_connected(gateway, "weather")
            yield Managed(url, gateway, directory / "servers.yaml", echo_url)


@asynccontextmanager
async def connect(url: str, groups: list[str], mode: str = "auto", on_message: Any = None) -> AsyncIterator[Client]:
    bearer = mint_token(AUTH, f"user-{'-'.join(groups) or 'none'}", [], 600, groups=groups)[0]
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, message_handler=on_message) as client,
    ):
        yield client


async def names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def admin_call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def test_admin_tools_are_visible_only_with_ui_permissions(managed: Managed) -> None:
    async with connect(managed.url, ["admins"]) as admin, connect(managed.url, ["operators"]) as operator:
        admin_tools = await names(admin)
        operator_tools = await names(operator)
    async with connect(managed.url, ["users"]) as user:
        user_tools = await names(user)
    management = {"list_services", "register_service", "remove_service", "toggle_service", "refresh_service"}
    assert management <= admin_tools
    assert operator_tools & management == {"list_services", "toggle_service"}
    assert user_tools == {"weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts"}


async def test_register_then_toggle_then_remove_changes_what_callers_see(managed: Managed) -> None:
    heard = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.set()

    async with (
        connect(managed.url, ["admins"]) as admin,
        connect(managed.url, ["admins"], mode="legacy", on_message=on_message) as watcher,
    ):
        await names(watcher)  # the session is known to the gateway once it has made a request
        mark = len(managed.gateway.lines)
        registered = await admin_call(
            admin, "register_service", {"service_name": "echo", "url": managed.echo_url, "tags": ["test"]}
        )
        assert registered["registered"] == "echo"
        await wait_connected(managed.gateway, "echo", mark)
        with anyio.fail_after(20):
            await heard.wait()
        assert "echo__echo" in await names(admin)
        assert load_servers(managed.servers_file).servers["echo"].tags == ("test",)

        await admin_call(admin, "toggle_service", {"service_name": "echo", "enabled": False})
        assert "echo__echo" not in await names(admin)
        with pytest.raises(MCPError, match="Unknown tool 'echo__echo'"):
            await admin.call_tool("echo__echo", {"text": "x"})
        services = (await admin_call(admin, "list_services", {}))["services"]
        assert {s["name"]: s["state"] for s in services}["echo"] == "disabled"

        mark = len(managed.gateway.lines)
        await admin_call(admin, "toggle_service", {"service_name": "echo", "enabled": True})
        await wait_connected(managed.gateway, "echo", mark)
        assert (await admin.call_tool("echo__echo", {"text": "back"})).structured_content == {"result": "back"}

        await admin_call(admin, "remove_service", {"service_name": "echo"})
        assert "echo" not in load_servers(managed.servers_file).servers
        assert not any(name.startswith("echo__") for name in await names(admin))


async def test_refused_registrations_say_why_and_change_nothing(managed: Managed) -> None:
    before = managed.servers_file.read_text()
    async with connect(managed.url, ["admins"]) as admin, connect(managed.url, ["operators"]) as operator:
        cases = {
            "169.254.169.254": {"service_name": "meta", "url": "http://169.254.169.254/latest/mcp"},
            "command not accepted": {"service_name": "shell", "transport": "stdio", "command": "bash"},
            "already registered": {"service_name": "weather", "url": managed.echo_url},
            "service_name": {"service_name": "Bad Name", "url": managed.echo_url},
        }
        for expected, arguments in cases.items():
            try:
                result = await admin.call_tool("register_service", arguments)
                message = "".join(b.text for b in result.content if isinstance(b, types.TextContent))
                assert result.is_error, expected
            except MCPError as error:
                message = error.message
            assert expected in message, (expected, message)
        with pytest.raises(MCPError, match="Unknown tool 'register_service'"):
            await operator.call_tool("register_service", {"service_name": "x", "url": managed.echo_url})
    assert managed.servers_file.read_text() == before


async def test_concurrent_registrations_all_land_in_a_valid_file(managed: Managed) -> None:
    async def register(index: int) -> None:
        async with connect(managed.url, ["admins"]) as admin:
            await admin_call(
                admin,
                "register_service",
                {"service_name": f"burst-{index}", "url": managed.echo_url, "prefix": f"b{index}"},
            )

    with anyio.fail_after(60):
        async with anyio.create_task_group() as burst:
            for index in range(8):
                burst.start_soon(register, index)
    servers = load_servers(managed.servers_file).servers
    assert {f"burst-{i}" for i in range(8)} <= servers.keys()
    async with connect(managed.url, ["admins"]) as admin:
        for index in range(8):
            await admin_call(admin, "remove_service", {"service_name": f"burst-{index}"})
    assert not any(name.startswith("burst-") for name in load_servers(managed.servers_file).servers)


async def test_a_broken_hand_edit_keeps_the_last_good_state(managed: Managed) -> None:
    good = managed.servers_file.read_text()
    try:
        mark = len(managed.gateway.lines)
        managed.servers_file.write_text(good + "  broken:\n    transport: stdio\n")
        await managed.gateway.wait_for(re.compile("registry.reload_failed"), 20, mark)
        operator = {"Authorization": f"Bearer {mint_token(AUTH, 'ops', [], 600, groups=['admins'])[0]}"}
        async with httpx2.AsyncClient(trust_env=False, headers=operator) as http:  # details need list_service: all
            ready = (await http.get(managed.url.removesuffix("/mcp") + "/readyz")).json()
        assert "servers.broken.command: Field required" in ready["registry_error"]
        async with connect(managed.url, ["users"]) as user:
            assert "weather__get_forecast" in await names(user)
    finally:
        mark = len(managed.gateway.lines)
        managed.servers_file.write_text(good)
        await managed.gateway.wait_for(re.compile("registry.reloaded"), 20, mark)


async def test_generate_token_grants_only_a_subset_of_the_callers_scopes(managed: Managed) -> None:
    async with connect(managed.url, ["users"]) as user:
        assert "generate_token" not in await names(user)
    async with connect(managed.url, ["admins"]) as admin:
        minted = await admin_call(admin, "generate_token", {"scopes": ["weather-only"], "ttl_seconds": 120})
        with pytest.raises(MCPError, match="You may only grant scopes you hold; not: root"):
            await admin.call_tool("generate_token", {"scopes": ["weather-only", "root"]})
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {minted['access_token']}"}, trust_env=False) as http,
        Client(streamable_http_client(managed.url, http_client=http)) as narrowed,
    ):
        assert await names(narrowed) == {
            "weather__get_forecast",
            "weather__get_current_conditions",
            "weather__list_weather_alerts",
        }


def test_a_crash_before_the_rename_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aggregator.config import files

    target = tmp_path / "servers.yaml"
    target.write_text("servers: {}\n")

    def crash(source: str, destination: Path) -> None:
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr("aggregator.config.files.os.replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        files.write_atomically(target, "servers:\n  half: {}\n")
    assert target.read_text() == "servers: {}\n"


async def test_group_tools_edit_scopes_and_take_effect_at_once(managed: Managed) -> None:
    async with connect(managed.url, ["admins"]) as admin:
        await admin_call(admin, "create_group", {"group_name": "ops-team"})
        await admin_call(
            admin,
            "add_server_to_scopes_groups",
            {"server_name": "weather", "group_names": ["ops-team"], "tools": ["get_forecast"]},
        )
        groups = await admin_call(admin, "list_groups", {})
        assert groups["groups"]["ops-team"] == ["ops-team"]
        assert groups["scopes"]["ops-team"][0]["tools"] == ["get_forecast"]
        async with connect(managed.url, ["ops-team"]) as ops:
            assert await names(ops) == {"weather__get_forecast"}
        await admin_call(
            admin, "remove_server_from_scopes_groups", {"server_name": "weather", "group_names": ["ops-team"]}
        )
        async with connect(managed.url, ["ops-team"]) as ops:
            assert await names(ops) == set()
        await admin_call(admin, "delete_group", {"group_name": "ops-team"})
        with pytest.raises(MCPError, match="Unknown scopes group 'ops-team'"):
            await admin.call_tool("delete_group", {"group_name": "ops-team"})
    async with connect(managed.url, ["users"]) as user:
        assert "create_group" not in await names(user)


async def test_health_is_a_resource_operators_can_read_and_follow(managed: Managed) -> None:
    updated = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == "gateway://health":
            updated.set()

    async with connect(managed.url, ["admins"], mode="legacy", on_message=on_message) as operator:
        assert "gateway://health" in {r.uri for r in (await operator.list_resources()).resources}
        health = await operator.read_resource("gateway://health")
        content = health.contents[0]
        assert isinstance(content, types.TextResourceContents)
        services = {s["name"]: s for s in json.loads(content.text)["services"]}
        assert services["weather"]["state"] == "healthy"
        assert services["weather"]["tools"] == 3
        await operator.session.subscribe_resource("gateway://health")
        await admin_call(operator, "refresh_service", {"service_name": "weather"})
        await admin_call(operator, "toggle_service", {"service_name": "weather", "enabled": False})
        with anyio.fail_after(20):
            await updated.wait()
        mark = len(managed.gateway.lines)
        await admin_call(operator, "toggle_service", {"service_name": "weather", "enabled": True})
        await wait_connected(managed.gateway, "weather", mark)
    async with connect(managed.url, ["users"]) as user:
        assert "gateway://health" not in {r.uri for r in (await user.list_resources()).resources}
