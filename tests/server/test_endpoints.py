"""Management tools live on /mcp/admin: agents on /mcp are never offered them, whoever they are.

Adversarial: an admin's token on /mcp neither sees nor calls a management tool (in both eras, on
the lean path and the SDK path, over /sse, with a forged `Mcp-Name` header); a caller without UI permissions
on /mcp/admin sees nothing more than it may use; /mcp/admin has its own 401 and RFC 9728 metadata;
`management_tools_on_mcp` puts them back on /mcp for old clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from aggregator.server.endpoints import AGENT_TOOLS, on_admin_endpoint
from aggregator.server.lean import LeanApp
from tests.harness import (
    ADMIN,
    ERAS,
    Era,
    LiveGateway,
    call_structured,
    member_token,
    serve_gateway,
    serve_upstreams,
    tool_names,
)
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
WEATHER = {"weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts"}
MANAGEMENT = {
    "list_services",
    "healthcheck",
    "register_service",
    "remove_service",
    "toggle_service",
    "refresh_service",
    "generate_token",
    "list_groups",
    "create_group",
    "delete_group",
    "add_server_to_scopes_groups",
    "remove_server_from_scopes_groups",
    "recent_activity",
    "list_held_tools",
    "approve_tool",
    "reject_tool",
    "list_registries",
    "refresh_registry",
}
# One call per management tool, with arguments it would accept: only the endpoint may refuse it.
CALLS: dict[str, dict[str, Any]] = {
    "list_services": {},
    "healthcheck": {},
    "register_service": {"service_name": "intruder", "url": "http://127.0.0.1:9/mcp"},
    "remove_service": {"service_name": "weather"},
    "toggle_service": {"service_name": "weather", "enabled": False},
    "refresh_service": {"service_name": "weather"},
    "generate_token": {"scopes": []},
    "list_groups": {},
    "create_group": {"group_name": "intruders"},
    "delete_group": {"group_name": "users"},
    "add_server_to_scopes_groups": {"server_name": "weather", "group_names": ["users"]},
    "remove_server_from_scopes_groups": {"server_name": "weather", "group_names": ["users"]},
    "recent_activity": {},
    "list_held_tools": {},
    "approve_tool": {"service_name": "weather", "tool_name": "get_forecast"},
    "reject_tool": {"service_name": "weather", "tool_name": "get_forecast"},
    "list_registries": {},
    "refresh_registry": {},
}
REFUSAL = "is a management tool, served on /mcp/admin, not on /mcp: call it on /mcp/admin"


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[LiveGateway]:
    async with serve_upstreams(
        tmp_path_factory.mktemp("endpoints"), {"weather": weather_url}, scopes=ADMIN_SCOPES
    ) as gateway:
        yield gateway


def files_of(live: LiveGateway) -> tuple[str, str]:
    return live.servers_file.read_text(), live.scopes_file.read_text()


async def test_the_calls_cover_every_management_tool(live: LiveGateway) -> None:
    admin = live.gateway.handlers.admin
    assert admin is not None
    assert set(admin.tools) - AGENT_TOOLS == MANAGEMENT == set(CALLS)


@pytest.mark.parametrize("era", ERAS)
async def test_an_admin_on_mcp_is_offered_upstream_tools_and_the_finder_only(live: LiveGateway, era: Era) -> None:
    async with live.member("admins", era=era) as agent, live.member("admins", era=era, path=ADMIN) as operator:
        assert await tool_names(agent) == WEATHER | AGENT_TOOLS
        assert await tool_names(operator) == WEATHER | AGENT_TOOLS | MANAGEMENT
        assert {s["name"] for s in (await call_structured(operator, "list_services", {}))["services"]} == {"weather"}


@pytest.mark.parametrize("era", ERAS)
async def test_an_admin_on_mcp_cannot_call_any_management_tool(live: LiveGateway, era: Era) -> None:
    before = files_of(live)
    async with live.member("admins", era=era) as agent:
        for name, arguments in CALLS.items():
            with pytest.raises(MCPError, match=f"'{name}' {REFUSAL}"):
                await agent.call_tool(name, arguments)
        assert (await agent.call_tool("weather__get_forecast", {"city": "Paris"})).is_error is not True
    assert files_of(live) == before
    assert live.gateway.pool.get("weather").spec.enabled


@pytest.mark.parametrize("era", ERAS)
async def test_a_caller_without_ui_permissions_sees_on_mcp_admin_only_what_it_may_use(
    live: LiveGateway, era: Era
) -> None:
    async with (
        live.member("users", era=era) as agent,
        live.member("users", era=era, path=ADMIN) as operator,
        live.member("operators", era=era, path=ADMIN) as weather_operator,
    ):
        assert await tool_names(operator) == await tool_names(agent) == WEATHER
        for name, arguments in CALLS.items():
            with pytest.raises(MCPError, match=f"Unknown tool '{name}'"):
                await operator.call_tool(name, arguments)
            # On /mcp too: a management tool it may not use is unknown, never "served on /mcp/admin".
            with pytest.raises(MCPError, match=f"Unknown tool '{name}'"):
                await agent.call_tool(name, arguments)
        shown = await tool_names(weather_operator)
        assert shown & MANAGEMENT == {
            "list_services",
            "healthcheck",
            "toggle_service",
            "generate_token",
            "list_groups",
            "list_held_tools",
            "recent_activity",
            "list_registries",
        }
        with pytest.raises(MCPError, match="Unknown tool 'remove_service'"):
            await weather_operator.call_tool("remove_service", {"service_name": "weather"})
        with pytest.raises(MCPError, match="needs the list_service permission for all servers"):
            await weather_operator.call_tool("recent_activity", {})


async def post(
    live: LiveGateway, path: str, name: str, headers: dict[str, str], token: str
) -> tuple[int, dict[str, Any]]:
    """A 2026-07-28 `tools/call` of `name` as raw HTTP, with `headers` on top of the proper ones."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    params = {"name": name, "arguments": CALLS.get(name, {"city": "Paris"}), "_meta": meta}
    sent = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
        **headers,
    }
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    async with live.http(token) as http:
        response = await http.post(path, content=json.dumps(message), headers=sent)
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return response.status_code, json.loads(text)


@pytest.mark.parametrize(
    ("name", "forged"),
    [
        ("remove_service", "weather__get_forecast"),  # the header names an upstream tool, the body a management one
        ("remove_service", "remove_service"),
        ("weather__get_forecast", "remove_service"),  # the header names a management tool, the body an upstream one
    ],
)
async def test_a_forged_mcp_name_header_reaches_no_management_tool_on_mcp(
    live: LiveGateway, name: str, forged: str
) -> None:
    before = files_of(live)
    status, answer = await post(live, "/mcp", name, {"mcp-name": forged}, member_token(["admins"]))
    assert "error" in answer, answer
    assert status >= 400 or answer["error"]["code"] < 0
    if name == forged:
        assert f"'{name}' {REFUSAL}" in answer["error"]["message"]
    assert files_of(live) == before and live.gateway.pool.get("weather").spec.enabled


async def test_mcp_admin_serves_2026_07_28_calls_with_its_headers(live: LiveGateway) -> None:
    status, answer = await post(live, ADMIN, "list_services", {}, member_token(["admins"]))
    assert status == 200 and answer["result"]["structuredContent"]["services"][0]["name"] == "weather"


async def test_mcp_admin_has_its_own_401_and_protected_resource_metadata(live: LiveGateway) -> None:
    async with live.http() as http:
        refused = await http.post(ADMIN, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        metadata_url = f"{live.base}/.well-known/oauth-protected-resource/mcp/admin"
        assert refused.status_code == 401
        assert f'resource_metadata="{metadata_url}"' in refused.headers["www-authenticate"]
        metadata = (await http.get(metadata_url)).json()
        assert metadata["resource"] == f"{live.base}/mcp/admin"
        aggregated = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert aggregated["resource"] == live.url
        garbage = await http.post(
            ADMIN, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={"Authorization": "Bearer x"}
        )
        assert garbage.status_code == 401 and "error_description" in garbage.headers["www-authenticate"]


async def test_the_lean_path_lists_no_management_tool_on_mcp(live: LiveGateway) -> None:
    assert isinstance(live.app, Starlette)
    lean = next(route.app for route in live.app.router.routes if isinstance(route, Route) and route.path == "/mcp")
    assert isinstance(lean, LeanApp)
    served = lean.served
    async with live.member("admins", era="auto") as agent:
        assert await tool_names(agent) == WEATHER | AGENT_TOOLS
    assert lean.served > served


@pytest.mark.parametrize("era", ERAS)
async def test_management_tools_on_mcp_puts_them_back_for_old_clients(
    tmp_path_factory: pytest.TempPathFactory, weather_url: str, era: Era
) -> None:
    async with (
        serve_gateway(
            tmp_path_factory.mktemp("old-clients"),
            servers={"weather": {"transport": "streamable-http", "url": weather_url}},
            scopes=ADMIN_SCOPES,
            management_tools_on_mcp=True,
        ) as old,
        old.member("admins", era=era) as agent,
        old.member("users", era=era) as user,
    ):
        assert await tool_names(agent) == WEATHER | AGENT_TOOLS | MANAGEMENT
        assert (await call_structured(agent, "list_services", {}))["services"][0]["name"] == "weather"
        assert await tool_names(user) == WEATHER
        with pytest.raises(MCPError, match="Unknown tool 'list_services'"):
            await user.call_tool("list_services", {})


async def test_an_admin_over_sse_is_offered_no_management_tool(live: LiveGateway) -> None:
    headers = {"Authorization": f"Bearer {member_token(['admins'])}"}
    async with Client(sse_client(live.base + "/sse", headers=headers), mode="legacy") as agent:
        assert await tool_names(agent) == WEATHER | AGENT_TOOLS
        with pytest.raises(MCPError, match=f"'generate_token' {REFUSAL}"):
            await agent.call_tool("generate_token", {"scopes": []})


def test_only_the_marked_endpoint_is_the_management_one() -> None:
    assert not on_admin_endpoint(None)  # stdio: no HTTP request at all
    assert not on_admin_endpoint(Request({"type": "http", "path": "/mcp/admin", "headers": []}))  # a path is no mark
