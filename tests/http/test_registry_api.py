"""The registry read API (/v0.1) on a real secured gateway: what each principal sees, paging, CORS, schemas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import httpx2
import hypothesis
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from aggregator.http.registry_api import GATEWAY_META, NAMESPACE
from aggregator.http.registry_openapi import openapi_document
from aggregator.server.handlers import SERVER_VERSION
from tests.conftest import REPOSITORY
from tests.harness import LiveGateway, free_port, member_token, serve_gateway
from tests.http.conftest import SCOPES

pytestmark = pytest.mark.anyio
SERVER_SCHEMA = json.loads((REPOSITORY / "tests" / "data" / "server.schema.2025-12-11.json").read_text())


@pytest.fixture(scope="module")
async def registry(
    tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url, "description": "Forecasts.", "tags": ["demo"]},
        "echo": {"transport": "streamable-http", "url": echo_url, "prefix": "e"},
        "down": {"transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp", "timeout": 1},
    }
    directory = tmp_path_factory.mktemp("registry")
    async with serve_gateway(directory, servers=servers, scopes=SCOPES, rate_limit_per_second=0) as live:
        yield live


async def get(live: LiveGateway, path: str, groups: list[str] | None = None, **params: Any) -> httpx2.Response:
    """GET `path` as a member of `groups` (anonymously without)."""
    async with live.http(member_token(groups) if groups is not None else None) as http:
        return await http.get(path, params=params)


def names(body: dict[str, Any]) -> list[str]:
    return [entry["server"]["name"] for entry in body["servers"]]


def validate(schema_name: str, body: dict[str, Any]) -> None:
    """Against the OpenAPI document the gateway serves, then each server against the official schema."""
    document = openapi_document()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", **document}).validate(body)
    entries = body["servers"] if schema_name == "ServerList" else [body]
    for entry in entries:
        jsonschema.Draft7Validator(SERVER_SCHEMA).validate(entry["server"])


async def test_each_principal_sees_the_servers_it_may_use(registry: LiveGateway) -> None:
    admin = (await get(registry, "/v0.1/servers", ["admins"])).json()
    weather_user = (await get(registry, "/v0.1/servers", ["weather-users"])).json()
    operator = (await get(registry, "/v0.1/servers", ["echo-operators"])).json()
    stranger = (await get(registry, "/v0.1/servers", ["strangers"])).json()

    assert names(admin) == [f"{NAMESPACE}/{name}" for name in ("down", "echo", "weather")]
    assert names(weather_user) == [f"{NAMESPACE}/weather"]
    assert names(operator) == [f"{NAMESPACE}/echo"]
    assert stranger == {"servers": [], "metadata": {"count": 0}}

    def callable_tools(body: dict[str, Any]) -> dict[str, int]:
        return {e["_meta"][GATEWAY_META]["server"]: e["_meta"][GATEWAY_META]["tools"] for e in body["servers"]}

    assert callable_tools(admin) == {"down": 0, "echo": 4, "weather": 3}
    assert callable_tools(weather_user) == {"weather": 1}  # only get_forecast is granted
    assert callable_tools(operator) == {"echo": 0}  # list_service alone shows it


async def test_servers_are_described_in_the_official_format(registry: LiveGateway) -> None:
    response = await get(registry, "/v0.1/servers", ["admins"])
    assert response.status_code == 200
    body = response.json()
    validate("ServerList", body)
    by_name = {entry["_meta"][GATEWAY_META]["server"]: entry for entry in body["servers"]}
    weather = by_name["weather"]
    assert weather["server"]["description"] == "Forecasts."
    assert weather["server"]["version"] == SERVER_VERSION
    assert weather["server"]["remotes"][0]["type"] == "streamable-http"
    assert weather["server"]["remotes"][0]["url"] == registry.url  # the aggregated endpoint
    assert weather["server"]["remotes"][0]["headers"][0]["name"] == "Authorization"
    assert weather["_meta"][GATEWAY_META] == {
        "server": "weather",
        "prefix": "weather",
        "transport": "streamable-http",
        "enabled": True,
        "state": "healthy",
        "protocolVersion": "2026-07-28",
        "tools": 3,
        "tags": ["demo"],
    }
    assert by_name["echo"]["_meta"][GATEWAY_META]["prefix"] == "e"
    assert by_name["down"]["_meta"][GATEWAY_META]["state"] in ("connecting", "unhealthy")
    assert by_name["down"]["server"]["description"] == "MCP server 'down', served through mcp-aggregator."


async def test_pages_follow_the_cursor_to_the_end(registry: LiveGateway) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        body = (await get(registry, "/v0.1/servers", ["admins"], **params)).json()
        validate("ServerList", body)
        assert body["metadata"]["count"] == len(body["servers"]) == 1
        seen.extend(names(body))
        cursor = body["metadata"].get("nextCursor")
        if cursor is None:
            break
    assert seen == [f"{NAMESPACE}/{name}" for name in ("down", "echo", "weather")]
    two = (await get(registry, "/v0.1/servers", ["admins"], limit="2")).json()
    assert names(two) == seen[:2] and two["metadata"]["nextCursor"] == seen[1]
    for bad in ("0", "101", "many"):
        refused = await get(registry, "/v0.1/servers", ["admins"], limit=bad)
        assert refused.status_code == 400
        assert "limit must be an integer from 1 to 100" in refused.json()["error"]


async def test_search_and_version_filter_the_list(registry: LiveGateway) -> None:
    assert names((await get(registry, "/v0.1/servers", ["admins"], search="WEA")).json()) == [f"{NAMESPACE}/weather"]
    assert len((await get(registry, "/v0.1/servers", ["admins"], version="latest")).json()["servers"]) == 3
    assert (await get(registry, "/v0.1/servers", ["admins"], version="9.9.9")).json()["servers"] == []


async def test_versions_of_one_server(registry: LiveGateway) -> None:
    encoded = quote(f"{NAMESPACE}/weather", safe="")
    versions = await get(registry, f"/v0.1/servers/{encoded}/versions", ["weather-users"])
    assert versions.status_code == 200
    validate("ServerList", versions.json())
    assert names(versions.json()) == [f"{NAMESPACE}/weather"]
    for version in ("latest", SERVER_VERSION):
        one = await get(registry, f"/v0.1/servers/{encoded}/versions/{version}", ["weather-users"])
        assert one.status_code == 200
        validate("ServerResponse", one.json())
        assert one.json()["_meta"]["io.modelcontextprotocol.registry/official"] == {
            "status": "active",
            "isLatest": True,
        }
    assert (await get(registry, "/v0.1/servers/weather/versions/latest", ["weather-users"])).status_code == 200
    missing_version = await get(registry, f"/v0.1/servers/{encoded}/versions/9.9.9", ["weather-users"])
    assert (missing_version.status_code, missing_version.json()) == (404, {"error": "Server version not found"})


async def test_a_hidden_server_looks_exactly_like_a_missing_one(registry: LiveGateway) -> None:
    hidden = await get(registry, f"/v0.1/servers/{quote(NAMESPACE + '/echo', safe='')}/versions", ["weather-users"])
    missing = await get(registry, f"/v0.1/servers/{quote(NAMESPACE + '/nope', safe='')}/versions", ["weather-users"])
    assert (
        (hidden.status_code, hidden.json())
        == (missing.status_code, missing.json())
        == (404, {"error": "Server not found"})
    )
    latest = await get(registry, "/v0.1/servers/echo/versions/latest", ["weather-users"])
    assert latest.status_code == 404


async def test_callers_without_an_acceptable_token_are_challenged(registry: LiveGateway) -> None:
    async with registry.http() as http:
        anonymous = await http.get("/v0.1/servers")
        forged = await http.get("/v0.1/servers", headers={"Authorization": "Bearer not.a.jwt"})
    assert anonymous.status_code == forged.status_code == 401
    metadata = f'resource_metadata="{registry.base}/.well-known/oauth-protected-resource/mcp"'
    assert anonymous.headers["www-authenticate"] == f"Bearer {metadata}"
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    # The same OAuth-style body as on /mcp (RFC 6750).
    assert anonymous.json() == {"error": "invalid_request", "error_description": "A bearer token is required."}
    assert forged.json() == {"error": "invalid_token", "error_description": "token is not a well-formed JWT"}


async def test_browsers_may_read_it_from_any_origin_without_credentials(registry: LiveGateway) -> None:
    origin = "https://inspector.example"
    async with registry.http() as http:
        preflight = await http.options(
            "/v0.1/servers",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        listed = await http.get(
            "/v0.1/servers", headers={"Origin": origin, "Authorization": f"Bearer {member_token(['admins'])}"}
        )
        refused = await http.get("/v0.1/servers", headers={"Origin": origin})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    assert listed.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in listed.headers
    assert refused.status_code == 401
    assert refused.headers["access-control-expose-headers"] == "WWW-Authenticate"


async def test_the_openapi_document_is_served(registry: LiveGateway) -> None:
    served = (await get(registry, "/v0.1/openapi.json")).json()
    assert served == openapi_document()
    assert set(served["paths"]) == {
        "/v0.1/servers",
        "/v0.1/servers/{serverName}/versions",
        "/v0.1/servers/{serverName}/versions/{version}",
    }


async def test_an_insecure_dev_gateway_lists_everything_to_everyone(tmp_path: Path) -> None:
    servers = {"ghost": {"transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp"}}
    async with serve_gateway(tmp_path, servers=servers, secured=False) as live, live.http() as http:
        body = (await http.get("/v0.1/servers")).json()
    assert names(body) == [f"{NAMESPACE}/ghost"]
    assert "headers" not in body["servers"][0]["server"]["remotes"][0]  # nothing to authenticate with


async def test_a_bounded_schemathesis_run_finds_no_contract_violation(registry: LiveGateway) -> None:
    """Generated valid and invalid requests against every documented operation; every response checked."""
    failures = await anyio.to_thread.run_sync(run_schemathesis, registry.base, member_token(["admins"]))
    assert failures == []


def run_schemathesis(base: str, bearer: str, examples: int = 15) -> list[str]:
    """Every operation, with valid and invalid generated requests; the failures found, one line each."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    failures: list[str] = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {bearer}"
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"the OpenAPI document has an invalid operation: {result.err()}")
                continue
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    contract(operation.as_strategy(generation_mode=mode), base, session, examples)()
                except (FailureGroup, AssertionError) as failure:  # schemathesis reports a BaseExceptionGroup
                    failures.append(f"{operation.label} ({mode.value}): {failure}")
    return failures


def contract(
    cases: SearchStrategy[schemathesis.Case[Any]], base: str, session: requests.Session, examples: int
) -> Callable[[], None]:
    """A bounded, deterministic property: each generated request's response passes every check."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases)
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=base, session=session)
        # Unknown query parameters are ignored on purpose (clients send the official registry's
        # `updated_since`, `include_deleted`), so invalid requests are not required to be refused;
        # every other check (no 5xx, documented status, content type and schema) applies.
        negative = case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE
        excluded = [negative_data_rejection] if negative else []
        case.validate_response(response, excluded_checks=excluded, headers=dict(session.headers))

    return check
