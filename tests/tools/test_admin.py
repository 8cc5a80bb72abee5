"""Managing the gateway through its own MCP tools, as a real principal, against real upstreams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.client.session import IncomingMessage

from aggregator.registry.models import load_servers
from tests.harness import (
    ADMIN,
    MANAGED,
    LiveGateway,
    call_structured,
    connected,
    serve_upstreams,
    token_for,
    tool_names,
    unchanged,
)
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def managed(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[LiveGateway]:
    async with serve_upstreams(
        tmp_path_factory.mktemp("admin"), {"weather": weather_url}, scopes=ADMIN_SCOPES, **MANAGED
    ) as live:
        yield live


async def test_admin_tools_are_visible_only_with_ui_permissions(managed: LiveGateway) -> None:
    async with managed.member("admins", path=ADMIN) as admin, managed.member("operators", path=ADMIN) as operator:
        admin_tools = await tool_names(admin)
        operator_tools = await tool_names(operator)
    async with managed.member("users", path=ADMIN) as user:
        user_tools = await tool_names(user)
    management = {"list_services", "register_service", "remove_service", "toggle_service", "refresh_service"}
    assert management <= admin_tools
    assert operator_tools & management == {"list_services", "toggle_service"}
    assert user_tools == {"weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts"}


async def test_register_then_toggle_then_remove_changes_what_callers_see(managed: LiveGateway, echo_url: str) -> None:
    heard = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.set()

    async with (
        managed.member("admins", path=ADMIN) as admin,
        managed.member("admins", era="legacy", message_handler=on_message, path=ADMIN) as watcher,
    ):
        await tool_names(watcher)  # the session is known to the gateway once it has made a request
        registered = await call_structured(
            admin, "register_service", {"service_name": "echo", "url": echo_url, "tags": ["test"]}
        )
        assert registered["registered"] == "echo"
        await managed.wait_until(connected("echo"))
        with anyio.fail_after(20):
            await heard.wait()
        assert "echo__echo" in await tool_names(admin)
        assert load_servers(managed.servers_file).servers["echo"].tags == ("test",)

        await call_structured(admin, "toggle_service", {"service_name": "echo", "enabled": False})
        assert "echo__echo" not in await tool_names(admin)
        with pytest.raises(MCPError, match="Unknown tool 'echo__echo'"):
            await admin.call_tool("echo__echo", {"text": "x"})
        services = (await call_structured(admin, "list_services", {}))["services"]
        assert {s["name"]: s["state"] for s in services}["echo"] == "disabled"

        await call_structured(admin, "toggle_service", {"service_name": "echo", "enabled": True})
        await managed.wait_until(connected("echo"))
        assert (await admin.call_tool("echo__echo", {"text": "back"})).structured_content == {"result": "back"}

        await call_structured(admin, "remove_service", {"service_name": "echo"})
        assert "echo" not in load_servers(managed.servers_file).servers
        assert not any(name.startswith("echo__") for name in await tool_names(admin))


async def test_refused_registrations_say_why_and_change_nothing(managed: LiveGateway, echo_url: str) -> None:
    with unchanged(managed.servers_file):
        async with managed.member("admins", path=ADMIN) as admin, managed.member("operators", path=ADMIN) as operator:
            cases = {
                "169.254.169.254": {"service_name": "meta", "url": "http://169.254.169.254/latest/mcp"},
                "command not accepted": {"service_name": "shell", "transport": "stdio", "command": "bash"},
                "already registered": {"service_name": "weather", "url": echo_url},
                "service_name": {"service_name": "Bad Name", "url": echo_url},
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
                await operator.call_tool("register_service", {"service_name": "x", "url": echo_url})


async def test_concurrent_registrations_all_land_in_a_valid_file(managed: LiveGateway, echo_url: str) -> None:
    async def register(index: int) -> None:
        async with managed.member("admins", path=ADMIN) as admin:
            await call_structured(
                admin,
                "register_service",
                {"service_name": f"burst-{index}", "url": echo_url, "prefix": f"b{index}"},
            )

    with anyio.fail_after(60):
        async with anyio.create_task_group() as burst:
            for index in range(8):
                burst.start_soon(register, index)
    servers = load_servers(managed.servers_file).servers
    assert {f"burst-{i}" for i in range(8)} <= servers.keys()
    async with managed.member("admins", path=ADMIN) as admin:
        for index in range(8):
            await call_structured(admin, "remove_service", {"service_name": f"burst-{index}"})
    assert not any(name.startswith("burst-") for name in load_servers(managed.servers_file).servers)


async def test_a_broken_hand_edit_keeps_the_last_good_state(managed: LiveGateway) -> None:
    good = managed.servers_file.read_text()
    try:
        mark = managed.log.mark()
        managed.servers_file.write_text(good + "  broken:\n    transport: stdio\n")
        await managed.log.wait_for("registry.reload_failed", 20, mark)
        async with managed.http(token_for("ops", groups=["admins"])) as http:  # details need list_service: all
            ready = (await http.get("/readyz")).json()
        assert "servers.broken.command: Field required" in ready["registry_error"]
        async with managed.member("users", path=ADMIN) as user:
            assert "weather__get_forecast" in await tool_names(user)
    finally:
        mark = managed.log.mark()
        managed.servers_file.write_text(good)
        await managed.log.wait_for("registry.reloaded", 20, mark)


async def test_generate_token_grants_only_a_subset_of_the_callers_scopes(managed: LiveGateway) -> None:
    async with managed.member("users", path=ADMIN) as user:
        assert "generate_token" not in await tool_names(user)
    async with managed.member("admins", path=ADMIN) as admin:
        minted = await call_structured(admin, "generate_token", {"scopes": ["weather-only"], "ttl_seconds": 120})
        with pytest.raises(MCPError, match="You may only grant scopes you hold; not: root"):
            await admin.call_tool("generate_token", {"scopes": ["weather-only", "root"]})
    async with managed.client(token=minted["access_token"], path=ADMIN) as narrowed:
        assert await tool_names(narrowed) == {
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


async def test_group_tools_edit_scopes_and_take_effect_at_once(managed: LiveGateway) -> None:
    async with managed.member("admins", path=ADMIN) as admin:
        await call_structured(admin, "create_group", {"group_name": "ops-team"})
        await call_structured(
            admin,
            "add_server_to_scopes_groups",
            {"server_name": "weather", "group_names": ["ops-team"], "tools": ["get_forecast"]},
        )
        groups = await call_structured(admin, "list_groups", {})
        assert groups["groups"]["ops-team"] == ["ops-team"]
        assert groups["scopes"]["ops-team"][0]["tools"] == ["get_forecast"]
        async with managed.member("ops-team", path=ADMIN) as ops:
            assert await tool_names(ops) == {"weather__get_forecast"}
        await call_structured(
            admin, "remove_server_from_scopes_groups", {"server_name": "weather", "group_names": ["ops-team"]}
        )
        async with managed.member("ops-team", path=ADMIN) as ops:
            assert await tool_names(ops) == set()
        await call_structured(admin, "delete_group", {"group_name": "ops-team"})
        with pytest.raises(MCPError, match="Unknown scopes group 'ops-team'"):
            await admin.call_tool("delete_group", {"group_name": "ops-team"})
    async with managed.member("users", path=ADMIN) as user:
        assert "create_group" not in await tool_names(user)


async def test_health_is_a_resource_operators_can_read_and_follow(managed: LiveGateway) -> None:
    updated = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == "gateway://health":
            updated.set()

    async with managed.member("admins", era="legacy", message_handler=on_message, path=ADMIN) as operator:
        assert "gateway://health" in {r.uri for r in (await operator.list_resources()).resources}
        health = await operator.read_resource("gateway://health")
        content = health.contents[0]
        assert isinstance(content, types.TextResourceContents)
        services = {s["name"]: s for s in json.loads(content.text)["services"]}
        assert services["weather"]["state"] == "healthy"
        assert services["weather"]["tools"] == 3
        await operator.session.subscribe_resource("gateway://health")
        await call_structured(operator, "refresh_service", {"service_name": "weather"})
        await call_structured(operator, "toggle_service", {"service_name": "weather", "enabled": False})
        with anyio.fail_after(20):
            await updated.wait()
        await call_structured(operator, "toggle_service", {"service_name": "weather", "enabled": True})
        await managed.wait_until(connected("weather"))
    async with managed.member("users", path=ADMIN) as user:
        assert "gateway://health" not in {r.uri for r in (await user.list_resources()).resources}
