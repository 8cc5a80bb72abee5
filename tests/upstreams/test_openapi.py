"""A REST service as an upstream (`transport: openapi`): tools, calls, errors, policy, the finder, credentials.

One real REST service (tests/servers/rest_service.py, bearer auth) behind one in-process gateway;
callers in both protocol eras.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.harness import ERAS, Era, LiveGateway, connected, serve_asgi, serve_gateway, text_of, token_for
from tests.servers.rest_service import RestService

pytestmark = pytest.mark.anyio

SERVICE_TOKEN = "service-secret-4c1f"
SCOPES = """
inventory-all: [{server: inventory, methods: [tools/list, tools/call], tools: ["*"]}]
inventory-read: [{server: inventory, methods: [tools/list, tools/call], tools: [getItem, listItems]}]
finder: [{server: mcpgw, methods: [tools/list, tools/call], tools: [intelligent_tool_finder]}]
"""
INVENTORY_TOOLS = {
    f"inventory__{name}"
    for name in ("listItems", "createItem", "getItem", "deleteItem", "failWith", "getNotice", "stall")
}


@dataclass(frozen=True, slots=True)
class Setup:
    live: LiveGateway
    service: RestService


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    service = RestService(token=SERVICE_TOKEN)
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("INVENTORY_TOKEN", SERVICE_TOKEN)
        async with serve_asgi(service.app, path="") as base:
            servers = {
                "inventory": {
                    "transport": "openapi",
                    "spec": f"{base}/openapi.json",
                    "base_url": base,
                    "auth": {"type": "bearer", "token_env": "INVENTORY_TOKEN"},
                    "identity_headers": ["X-User"],
                    "timeout": 1.5,
                    "description": "The shop's inventory",
                }
            }
            async with serve_gateway(tmp_path_factory.mktemp("openapi"), servers=servers, scopes=SCOPES) as live:
                await live.wait_until(connected("inventory"))
                yield Setup(live, service)


def caller(setup: Setup, era: Era, *scopes: str) -> Any:
    return setup.live.client(f"user-{'-'.join(scopes)}", scopes=scopes, era=era)


@pytest.mark.parametrize("era", ERAS)
async def test_every_operation_is_a_tool_with_its_parameters_as_schema(setup: Setup, era: Era) -> None:
    async with caller(setup, era, "inventory-all") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == INVENTORY_TOOLS
    schemas = {name: tools[name].input_schema for name in tools}
    assert schemas["inventory__getItem"]["properties"]["item_id"]["type"] == "integer"
    assert schemas["inventory__getItem"]["required"] == ["item_id"]
    assert set(schemas["inventory__listItems"]["properties"]) == {"limit", "cursor"}
    assert "required" not in schemas["inventory__listItems"] or not schemas["inventory__listItems"]["required"]
    assert sorted(schemas["inventory__createItem"]["required"]) == ["name", "quantity"]
    assert tools["inventory__createItem"].description is not None
    assert "Create an inventory item" in tools["inventory__createItem"].description


ROUND_TRIPS = [
    ("inventory__getItem", {"item_id": 2}, {"id": 2, "name": "bellows", "quantity": 20}),
    ("inventory__getItem", {"item_id": 5}, {"id": 5, "name": "emery cloth", "quantity": 50}),
    ("inventory__listItems", {}, {"next_cursor": "2"}),
    ("inventory__listItems", {"limit": 3, "cursor": "2"}, {"next_cursor": None}),
    ("inventory__listItems", {"limit": 50}, {"next_cursor": None}),
    ("inventory__createItem", {"name": "file", "quantity": 7}, {"name": "file", "quantity": 7}),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("tool", "arguments", "expected"), ROUND_TRIPS)
async def test_calls_round_trip(setup: Setup, era: Era, tool: str, arguments: dict[str, Any], expected: Any) -> None:
    async with caller(setup, era, "inventory-all") as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content.items() >= expected.items()


@pytest.mark.parametrize("era", ERAS)
async def test_pages_follow_the_cursor_to_the_end(setup: Setup, era: Era) -> None:
    names: list[str] = []
    cursor: str | None = None
    async with caller(setup, era, "inventory-read") as client:
        for _ in range(10):
            arguments = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
            page = (await client.call_tool("inventory__listItems", arguments)).structured_content
            assert page is not None
            names += [item["name"] for item in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
    assert names[:5] == ["anvil", "bellows", "chisel", "drill", "emery cloth"]


@pytest.mark.parametrize("era", ERAS)
async def test_a_text_answer_is_a_text_result(setup: Setup, era: Era) -> None:
    async with caller(setup, era, "inventory-all") as client:
        result = await client.call_tool("inventory__getNotice", {})
    assert not result.is_error
    assert text_of(result) == "Closed on Sundays."


FAILURES = [
    ("getItem", {"item_id": 99}, r"answered getItem \(GET /items/\{item_id\}\) with HTTP 404 Not Found: .*no item 99"),
    ("failWith", {"status": 400}, r"answered failWith \(GET /failures/\{status\}\) with HTTP 400 Bad Request: "),
    ("failWith", {"status": 403}, r"with HTTP 403 Forbidden: .*failing with 403 as asked"),
    ("failWith", {"status": 429}, r"with HTTP 429 Too Many Requests"),
    ("failWith", {"status": 500}, r"with HTTP 500 Internal Server Error: .*failing with 500"),
    ("failWith", {"status": 503}, r"with HTTP 503 Service Unavailable"),
    ("failWith", {"status": 502, "html": True}, r"with HTTP 502 Bad Gateway$"),
    ("stall", {}, r"did not answer stall \(GET /stall\) within 1\.35 s"),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("operation", "arguments", "says"), FAILURES)
async def test_a_failed_rest_call_is_a_tool_error_naming_upstream_operation_and_status(
    setup: Setup, era: Era, operation: str, arguments: dict[str, Any], says: str
) -> None:
    async with caller(setup, era, "inventory-all") as client:
        result = await client.call_tool(f"inventory__{operation}", arguments)
        still = await client.call_tool("inventory__getItem", {"item_id": 1})
    message = text_of(result)
    assert result.is_error
    assert message.startswith("REST service 'inventory' "), message
    assert re.search(says, message), message
    assert "<html" not in message and "Traceback" not in message
    assert not still.is_error  # one failed operation breaks nothing


@pytest.mark.parametrize("era", ERAS)
async def test_a_caller_scoped_to_two_operations_sees_and_calls_exactly_those(setup: Setup, era: Era) -> None:
    before = len(setup.service.requests)
    async with caller(setup, era, "inventory-read") as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        got = await client.call_tool("inventory__getItem", {"item_id": 3})
        page = await client.call_tool("inventory__listItems", {"limit": 1})
        refused = []
        for tool, arguments in (("createItem", {"name": "x", "quantity": 1}), ("deleteItem", {"item_id": 1})):
            with pytest.raises(MCPError) as raised:
                await client.call_tool(f"inventory__{tool}", arguments)
            refused.append(str(raised.value))
    assert listed == {"inventory__getItem", "inventory__listItems"}
    assert got.structured_content == {"id": 3, "name": "chisel", "quantity": 30}
    assert not page.is_error
    assert all("inventory__" in message for message in refused), refused
    assert len(setup.service.requests) == before + 2  # the refused calls never reached the service
    assert setup.service.items.get(1) is not None


@pytest.mark.parametrize("era", ERAS)
async def test_the_finder_finds_the_operations_a_caller_may_call(setup: Setup, era: Era) -> None:
    async with caller(setup, era, "finder", "inventory-read") as client:
        scoped = await find(client, "get one inventory item by its id")
        nothing_else = await find(client, "create an inventory item with a stock quantity")
    async with caller(setup, era, "finder", "inventory-all") as client:
        everything = await find(client, "create an inventory item with a stock quantity")
    assert scoped[0] == "inventory__getItem", scoped
    assert set(scoped) <= {"inventory__getItem", "inventory__listItems"}
    assert set(nothing_else) <= {"inventory__getItem", "inventory__listItems"}
    assert "inventory__createItem" in everything[:3], everything


async def find(client: Client, query: str) -> list[str]:
    result = await client.call_tool("intelligent_tool_finder", {"query": query, "top_k": 5})
    assert result.structured_content is not None, text_of(result)
    return [tool["name"] for tool in result.structured_content["tools"]]


@asynccontextmanager
async def client_with_headers(live: LiveGateway, era: Era, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers, trust_env=False) as http,
        Client(streamable_http_client(live.url, http_client=http), mode=era) as client,
    ):
        yield client


@pytest.mark.parametrize("era", ERAS)
async def test_the_service_gets_its_own_credential_and_never_the_callers_token(setup: Setup, era: Era) -> None:
    token = token_for("carol", scopes=["inventory-all"])
    headers = {"Authorization": f"Bearer {token}", "X-Caller-Secret": "caller-only-7d2e", "Cookie": "session=c00k1e"}
    before = len(setup.service.requests)
    async with client_with_headers(setup.live, era, headers) as client:
        results = [
            await client.call_tool("inventory__getItem", {"item_id": 4}),
            await client.call_tool("inventory__createItem", {"name": "rasp", "quantity": 2}),
            await client.call_tool("inventory__failWith", {"status": 418}),
        ]
    seen = setup.service.requests[before:]
    assert [result.is_error for result in results] == [False, False, True]
    assert len(seen) == 3
    for request in seen:
        assert request["authorization"] == f"Bearer {SERVICE_TOKEN}"
        assert request["x-user"] == "carol"  # identity_headers: who is calling, as a plain header
        values = " ".join(request.values())
        assert token not in values and "caller-only-7d2e" not in values and "c00k1e" not in values
        assert "x-caller-secret" not in request and "cookie" not in request and "mcp-session-id" not in request


async def test_list_services_shows_the_rest_service(setup: Setup) -> None:
    upstream = setup.live.gateway.pool.get("inventory")
    assert upstream.spec.transport == "openapi"
    assert upstream.last_error is None
    assert {tool.name for tool in upstream.tools} == {name.removeprefix("inventory__") for name in INVENTORY_TOOLS}
    assert isinstance(upstream.tools[0], types.Tool)
