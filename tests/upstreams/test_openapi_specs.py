"""An openapi upstream's spec: which operations it serves and how, re-reading it, a large public spec, address checks.

Real REST service (tests/servers/rest_service.py), real gateways in-process, callers in both eras.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError

from aggregator.catalog.names import host_name
from aggregator.config.yamlfile import YamlDocument
from aggregator.errors import ConfigError
from aggregator.registry.models import OpenApiUpstream, validate_servers
from aggregator.upstreams.openapi_spec import _tool_name
from aggregator.upstreams.state import UpstreamState
from tests.harness import ADMIN, ERAS, Era, LiveGateway, connected, serve_asgi, serve_gateway, text_of
from tests.policies import admins_policy
from tests.servers.rest_service import RestService

pytestmark = pytest.mark.anyio

SCOPES = admins_policy(
    methods=("tools/list", "tools/call", "resources/list", "resources/read", "resources/templates/list")
)
GITHUB_SPEC = Path(__file__).resolve().parents[1] / "data" / "openapi" / "github-rest-subset.json.gz"
GITHUB_OPERATIONS = 348
GITHUB_LOAD_BOUND = 20.0
"""Seconds from starting a gateway to a live session with all 348 operations as tools.

Measured on the 2 shared cores of this machine, busy with other work: 5.9 s from a cold start (the
gateway, fastmcp's import, reading, preparing and parsing the spec in 2.1 s), 2.7 s with fastmcp
already imported, 4.6 s for two such upstreams at once (this test's case). The bound leaves room
for a machine under heavier load (the suite runs on two workers)."""


@asynccontextmanager
async def rest_service() -> AsyncIterator[tuple[RestService, str]]:
    service = RestService()
    async with serve_asgi(service.app, path="") as base:
        yield service, base


def admin(live: LiveGateway, era: Era) -> Any:
    return live.member("admins", era=era, path=ADMIN)


async def listing(client: Client) -> tuple[set[str], set[str], set[str]]:
    """The tools, resource URIs and resource templates `client` is shown."""
    tools = {tool.name for tool in (await client.list_tools()).tools}
    resources = {str(resource.uri) for resource in (await client.list_resources()).resources}
    templates = {template.uri_template for template in (await client.list_resource_templates()).resource_templates}
    return tools, resources, templates


SELECTIONS: list[tuple[str, dict[str, Any], set[str], int, int]] = [
    # (name, what servers.yaml says beyond spec/base_url, tools, resources, templates)
    ("all", {}, {"listItems", "createItem", "getItem", "deleteItem", "failWith", "getNotice", "stall"}, 0, 0),
    ("by-tag", {"include": ["items"]}, {"listItems", "createItem", "getItem"}, 0, 0),
    ("by-id", {"include": ["getItem", "getNotice"]}, {"getItem", "getNotice"}, 0, 0),
    (
        "tag-and-id",
        {"include": ["items", "failWith"], "exclude": ["createItem"]},
        {"listItems", "getItem", "failWith"},
        0,
        0,
    ),
    ("exclude-wins", {"include": ["admin"], "exclude": ["deleteItem"]}, set(), 0, 0),
    ("exclude-tags", {"exclude": ["items", "failures"]}, {"deleteItem"}, 0, 0),
    (
        "renamed",
        {"include": ["items"], "names": {"listItems": "page_of_items"}},
        {"page_of_items", "createItem", "getItem"},
        0,
        0,
    ),
    (
        "route-map",
        {
            "include": ["items", "getNotice"],
            "route_map": [
                {"methods": ["GET"], "pattern": r"^/items/\{", "mcp_type": "resource_template"},
                {"methods": ["GET"], "pattern": "^/notice$", "mcp_type": "resource"},
                {"methods": ["DELETE"], "mcp_type": "exclude"},
            ],
        },
        {"listItems", "createItem"},
        1,
        1,
    ),
    (
        "tagged-map",
        {"route_map": [{"tags": ["failures"], "mcp_type": "exclude"}]},
        {"listItems", "createItem", "getItem", "deleteItem"},
        0,
        0,
    ),
]


@pytest.fixture(scope="module")
async def selections(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    async with rest_service() as (_, base):
        servers = {
            name: {"transport": "openapi", "spec": f"{base}/openapi.json", "base_url": base, **extra}
            for name, extra, *_ in SELECTIONS
        }
        async with serve_gateway(tmp_path_factory.mktemp("selections"), servers=servers, scopes=SCOPES) as live:
            await live.wait_until(connected(*servers))
            yield live


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("name", "extra", "tools", "resources", "templates"), SELECTIONS, ids=[s[0] for s in SELECTIONS]
)
async def test_include_exclude_names_and_route_maps_choose_what_is_served(
    selections: LiveGateway, era: Era, name: str, extra: Any, tools: set[str], resources: int, templates: int
) -> None:
    async with admin(selections, era) as client:
        listed_tools, listed_resources, listed_templates = await listing(client)
    prefix = f"{name}__"
    assert {tool.removeprefix(prefix) for tool in listed_tools if tool.startswith(prefix)} == tools
    assert len([uri for uri in listed_resources if name in uri]) == resources, listed_resources
    assert len([uri for uri in listed_templates if name in uri]) == templates, listed_templates


@pytest.mark.parametrize("era", ERAS)
async def test_a_route_mapped_operation_reads_as_a_resource(selections: LiveGateway, era: Era) -> None:
    async with admin(selections, era) as client:
        _, resources, templates = await listing(client)
        notice = next(uri for uri in resources if "route-map" in uri and "getNotice" in uri)
        template = next(uri for uri in templates if "route-map" in uri)
        read = await client.read_resource(notice)
        item = await client.read_resource(template.replace("{item_id}", "3"))
    assert [getattr(content, "text", None) for content in read.contents] == ["Closed on Sundays."]
    assert json.loads(getattr(item.contents[0], "text", "")) == {"id": 3, "name": "chisel", "quantity": 30}


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("{ not json", r"cannot be used: it is neither JSON nor YAML"),
        ('{"swagger": "2.0", "paths": {}}', r"Swagger 2\.0 document"),
        ('{"openapi": "3.1.0", "info": {}}', r"it has no paths"),
        ("- a\n- list\n", r"it is not a mapping"),
        ('{"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {}}', r"no absolute server URL"),
    ],
)
async def test_a_spec_that_cannot_be_used_names_the_upstream_and_why(tmp_path: Path, spec: str, error: str) -> None:
    document = tmp_path / "spec.json"
    document.write_text(spec)
    servers = {"broken": {"transport": "openapi", "spec": str(document)}}
    async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES) as live:
        upstream = live.gateway.pool.get("broken")
    assert upstream.state is UpstreamState.UNHEALTHY
    assert upstream.last_error is not None
    assert f"its OpenAPI spec {document}" in upstream.last_error or "names no absolute" in upstream.last_error
    assert re.search(error, upstream.last_error), upstream.last_error
    assert "Traceback" not in "\n".join(live.log.lines)


class Notifications:
    """The list_changed notifications a caller receives."""

    def __init__(self) -> None:
        self.tools = 0
        self.arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.tools += 1
            self.arrived.set()


async def test_a_changed_file_spec_is_read_again_and_callers_hear_list_changed(tmp_path: Path) -> None:
    async with rest_service() as (service, base):
        spec_file = tmp_path / "inventory.json"
        spec_file.write_text(json.dumps(service.document(base)))
        servers = {"inventory": {"transport": "openapi", "spec": "inventory.json"}}  # relative to servers.yaml
        async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES) as live:
            await live.wait_until(connected("inventory"))
            heard = Notifications()
            async with live.member("admins", era="legacy", message_handler=heard) as legacy:
                before = await legacy.list_tools()
                service.paths = {path: item for path, item in service.paths.items() if path != "/stall"}
                spec_file.write_text(json.dumps(service.document(base)))
                with anyio.fail_after(10):
                    await heard.arrived.wait()
                after = {tool.name for tool in (await legacy.list_tools()).tools}
                mark = len(live.log.lines)
                spec_file.write_text("{ this is not a spec")
                await live.log.wait_for(
                    r"openapi\.spec_unusable upstream=inventory .*neither JSON nor YAML", after=mark
                )
                async with live.member("admins", era="auto") as modern:
                    kept = {tool.name for tool in (await modern.list_tools()).tools}
                called = await legacy.call_tool("inventory__getItem", {"item_id": 1})
    assert "inventory__stall" in {tool.name for tool in before.tools}
    assert "inventory__stall" not in after and "inventory__getItem" in after
    assert kept == after  # a spec that cannot be used keeps the last good operations
    assert called.structured_content == {"id": 1, "name": "anvil", "quantity": 10}


@pytest.mark.parametrize("era", ERAS)
async def test_refresh_service_reads_a_url_spec_again(tmp_path: Path, era: Era) -> None:
    async with rest_service() as (service, base):
        servers = {"inventory": {"transport": "openapi", "spec": f"{base}/openapi.json", "base_url": base}}
        async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES) as live, admin(live, era) as client:
            await live.wait_until(connected("inventory"))
            before = {tool.name for tool in (await client.list_tools()).tools}
            service.paths = {**service.paths, "/notice": {}}  # the operation is gone from the document
            fetched = service.documents_served
            refreshed = await client.call_tool("refresh_service", {"service_name": "inventory"})
            after = {tool.name for tool in (await client.list_tools()).tools}
            service.paths = []  # type: ignore[assignment]  # a document that cannot be used
            for _ in range(2):
                kept = await client.call_tool("refresh_service", {"service_name": "inventory"})
                assert not kept.is_error and kept.structured_content is not None, text_of(kept)
                assert kept.structured_content["tools"] == 6
            await live.log.wait_for(r"openapi\.spec_unusable upstream=inventory .*it has no paths")
            warnings = [line for line in live.log.lines if "openapi.spec_unusable" in line]
    assert not refreshed.is_error, text_of(refreshed)
    assert service.documents_served > fetched
    assert before - after == {"inventory__getNotice"}
    assert refreshed.structured_content is not None and refreshed.structured_content["tools"] == 6
    assert len(warnings) == 1  # reported once, not on every listing


def github_document(tmp_path: Path) -> Path:
    path = tmp_path / "github.json"
    path.write_bytes(gzip.decompress(GITHUB_SPEC.read_bytes()))
    return path


def github_operation_ids(path: Path) -> Iterator[str]:
    for item in json.loads(path.read_text())["paths"].values():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                yield operation["operationId"]


async def test_a_large_public_spec_loads_within_its_bound_and_the_name_budget_warns(tmp_path: Path) -> None:
    document = github_document(tmp_path)
    budget = 64
    long_ids = [
        operation_id
        for operation_id in github_operation_ids(document)
        if len(host_name("aggregator", f"short__{_tool_name(operation_id)}")) > budget
    ]
    servers = {
        "github": {"transport": "openapi", "spec": str(document), "base_url": "https://api.github.com"},
        "short": {
            "transport": "openapi",
            "spec": str(document),
            "base_url": "https://api.github.com",
            "names": {operation_id: f"op_{index}" for index, operation_id in enumerate(long_ids)},
        },
    }
    async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES) as live:
        # The bound is the deadline of the wait (no timed assertion): past it, the test fails.
        await live.wait_until(connected("github", "short"), GITHUB_LOAD_BOUND)
        async with admin(live, "auto") as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        warned = {
            match.group(1) for line in live.log.lines if (match := re.search(r"names\.over_budget tool=(\S+)", line))
        }
    github = {name for name in tools if name.startswith("github__")}
    assert len(github) == GITHUB_OPERATIONS
    assert len({name for name in tools if name.startswith("short__")}) == GITHUB_OPERATIONS
    too_long = {name for name in github if len(host_name("aggregator", name)) > budget}
    assert too_long and warned & github == too_long  # every over-long name is named, once
    assert not {name for name in warned if name.startswith("short__")}  # `names` shortened them all
    assert tools["github__repos_get_content"].input_schema["required"] == ["owner", "repo", "path"]


REGISTRATION_REFUSALS = [
    ({"spec": "http://127.0.0.1:{port}/openapi.json"}, r"127\.0\.0\.1 is a loopback address; refused"),
    ({"spec": "http://localhost:{port}/openapi.json"}, r"loopback address; refused"),
    ({"spec": "http://169.254.169.254/openapi.json"}, r"cloud metadata address; refused"),
    ({"spec": "http://0x7f000001:{port}/openapi.json"}, r"loopback address; refused"),
    ({"spec": "http://93.184.216.34/openapi.json", "base_url": "http://10.1.2.3/"}, r"10\.1\.2\.3 is a private"),
    ({"spec": "http://93.184.216.34/openapi.json", "base_url": "http://[::1]:{port}/"}, r"loopback address; refused"),
    ({"spec": "file:///etc/passwd"}, r"is not an http\(s\) URL"),
    ({"spec": "/etc/passwd"}, r"is not an http\(s\) URL"),
    ({}, r"needs spec"),
    ({"spec": "http://93.184.216.34/o.json", "url": "http://93.184.216.34/mcp"}, r"not url, template or values"),
]


@pytest.mark.parametrize("era", ERAS)
async def test_register_service_refuses_a_rest_service_at_a_disallowed_address(tmp_path: Path, era: Era) -> None:
    async with rest_service() as (service, base), serve_gateway(tmp_path, servers={}, scopes=SCOPES) as live:
        port = base.rsplit(":", 1)[1]
        before = live.servers_file.read_text()
        messages = []
        async with admin(live, era) as client:
            for index, (arguments, _) in enumerate(REGISTRATION_REFUSALS):
                filled = {key: value.replace("{port}", port) for key, value in arguments.items()}
                request = {"service_name": f"rest-{index}", "transport": "openapi", **filled}
                try:
                    result = await client.call_tool("register_service", request)
                    assert result.is_error, request
                    messages.append(text_of(result))
                except MCPError as error:
                    messages.append(error.message)
    for (arguments, says), message in zip(REGISTRATION_REFUSALS, messages, strict=True):
        assert re.search(says, message), (arguments, message)
    assert live.servers_file.read_text() == before
    assert service.documents_served == 0 and not service.requests


CONNECT_TIME = [
    # (spec host, base URL host, allowed networks, what the upstream's last error says, or None: it connects)
    ("127.0.0.1", None, [], r"OpenAPI spec http://127\.0\.0\.1:\d+/openapi\.json cannot be used: .*loopback"),
    ("127.0.0.1", "127.0.0.2", ["127.0.0.1/32"], r"base URL http://127\.0\.0\.2:\d+ is refused: .*loopback"),
    ("127.0.0.1", "127.0.0.1", ["127.0.0.1/32"], None),
]


@pytest.mark.parametrize(("spec_host", "base_host", "allowed", "error"), CONNECT_TIME)
async def test_a_registered_rest_service_connects_only_to_allowed_addresses(
    tmp_path: Path, spec_host: str, base_host: str | None, allowed: list[str], error: str | None
) -> None:
    async with rest_service() as (service, base):
        port = base.rsplit(":", 1)[1]
        entry: dict[str, Any] = {
            "transport": "openapi",
            "spec": f"http://{spec_host}:{port}/openapi.json",
            "registered_by": "mallory",
        }
        if base_host is not None:
            entry["base_url"] = f"http://{base_host}:{port}"
        async with serve_gateway(
            tmp_path, servers={"rest": entry}, scopes=SCOPES, admin_allowed_networks=allowed
        ) as live:
            upstream = live.gateway.pool.get("rest")
            if error is None:
                await live.wait_until(connected("rest"))
                async with admin(live, "auto") as client:
                    result = await client.call_tool("rest__getItem", {"item_id": 2})
                assert result.structured_content == {"id": 2, "name": "bellows", "quantity": 20}
                return
    assert upstream.state is UpstreamState.UNHEALTHY
    assert upstream.last_error is not None and re.search(error, upstream.last_error), upstream.last_error
    assert not service.requests  # no API request ever left for a refused address
    if "cannot be used" in error:
        assert service.documents_served == 0


AUTH_KINDS = [
    # (auth settings, environment, what the service's Authorization header looks like)
    ({"type": "bearer", "token_env": "REST_TOKEN"}, {"REST_TOKEN": "static-7f3a"}, r"^Bearer static-7f3a$"),
    (
        {
            "type": "oauth2-client-credentials",
            "token_url": "{base}/token",
            "client_id": "gateway",
            "client_secret_env": "REST_CLIENT_SECRET",
        },
        {"REST_CLIENT_SECRET": "s3cret-client"},
        r"^Bearer issued-gateway-1$",
    ),
    (
        {"type": "aws-sigv4", "service": "execute-api", "region": "eu-west-1"},
        {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG", "AWS_PROFILE": ""},
        r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, SignedHeaders=",
    ),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("auth", "environment", "authorization"), AUTH_KINDS, ids=[a["type"] for a, *_ in AUTH_KINDS])
async def test_the_rest_service_gets_the_credential_of_each_auth_kind(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    era: Era,
    auth: dict[str, str],
    environment: Any,
    authorization: str,
) -> None:
    for variable, value in environment.items():
        if value:
            monkeypatch.setenv(variable, value)
        else:
            monkeypatch.delenv(variable, raising=False)
    async with rest_service() as (service, base):
        service.clients["gateway"] = "s3cret-client"
        filled = {key: value.replace("{base}", base) for key, value in auth.items()}
        entry = {"transport": "openapi", "spec": f"{base}/openapi.json", "base_url": base, "auth": filled}
        async with serve_gateway(tmp_path, servers={"rest": entry}, scopes=SCOPES) as live:
            await live.wait_until(connected("rest"))
            async with admin(live, era) as client:
                result = await client.call_tool("rest__getItem", {"item_id": 4})
    assert result.structured_content == {"id": 4, "name": "drill", "quantity": 40}, text_of(result)
    assert [request["authorization"] for request in service.requests] != []
    for request in service.requests:
        assert re.search(authorization, request["authorization"]), request["authorization"]


@pytest.mark.parametrize(
    ("spec_host", "sent"),
    [("127.0.0.1", True), ("localhost", False)],
    ids=["same-origin", "other-origin"],
)
async def test_the_spec_is_fetched_with_the_credential_only_from_the_services_own_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec_host: str, sent: bool
) -> None:
    monkeypatch.setenv("REST_TOKEN", "static-7f3a")
    async with rest_service() as (service, base):
        port = base.rsplit(":", 1)[1]
        entry = {
            "transport": "openapi",
            "spec": f"http://{spec_host}:{port}/openapi.json",
            "base_url": base,
            "headers": {"X-Api-Key": "key-91b2"},
            "auth": {"type": "bearer", "token_env": "REST_TOKEN"},
        }
        async with serve_gateway(tmp_path, servers={"rest": entry}, scopes=SCOPES) as live:
            await live.wait_until(connected("rest"))
            async with admin(live, "auto") as client:
                assert not (await client.call_tool("rest__getItem", {"item_id": 1})).is_error
    fetched = service.document_requests[0]
    assert ("authorization" in fetched, "x-api-key" in fetched) == (sent, sent)
    assert service.requests[0]["authorization"] == "Bearer static-7f3a"
    assert service.requests[0]["x-api-key"] == "key-91b2"


SERVERS_YAML_ERRORS = [
    ({"spec": "ftp://example.com/openapi.json"}, "spec", r"neither an http\(s\) URL nor a file path"),
    ({"spec": "https:///openapi.json"}, "spec", r"is not an http\(s\) URL"),
    ({"spec": "/etc/passwd", "registered_by": "mallory"}, "spec", r"a caller may not have the gateway read its files"),
    ({"spec": ""}, "spec", r"at least 1 character"),
    ({}, "spec", r"Field required"),
    ({"spec": "a.json", "base_url": "file:///srv"}, "base_url", r"is not an http\(s\) URL"),
    ({"spec": "a.json", "route_map": [{"pattern": "(", "mcp_type": "tool"}]}, "route_map.0.pattern", r"not a regular"),
    ({"spec": "a.json", "route_map": [{"mcp_type": "prompt"}]}, "route_map.0.mcp_type", r"'tool', 'resource'"),
    ({"spec": "a.json", "route_map": [{"methods": ["FETCH"], "mcp_type": "tool"}]}, "route_map.0.methods", "'GET'"),
    ({"spec": "a.json", "include": "items"}, "include", r"valid tuple"),
    ({"spec": "a.json", "url": "http://example.com/mcp"}, "url", r"unknown key"),
    ({"spec": "a.json", "auth": {"type": "bearer", "token_env": "NOT_SET_ANYWHERE_42"}}, "auth", r"is not set"),
]


@pytest.mark.parametrize(("entry", "field", "says"), SERVERS_YAML_ERRORS)
def test_servers_yaml_names_the_field_of_a_wrong_openapi_entry(entry: dict[str, Any], field: str, says: str) -> None:
    document = YamlDocument(Path("servers.yaml"), {"servers": {"rest": {"transport": "openapi", **entry}}})
    with pytest.raises(ConfigError) as raised:
        validate_servers(document)
    message = str(raised.value)
    assert f"servers.rest.{field}" in message, message
    assert re.search(says, message), message


def test_a_valid_openapi_entry_reads_as_written() -> None:
    entry = {
        "transport": "openapi",
        "spec": "specs/inventory.yaml",
        "base_url": "https://inventory.example.com/v1",
        "include": ["items", "getNotice"],
        "exclude": ["deleteItem"],
        "names": {"listItems": "page_of_items"},
        "route_map": [{"methods": ["GET"], "pattern": "^/notice$", "mcp_type": "resource"}],
        "timeout": 10,
    }
    spec = validate_servers(YamlDocument(Path("servers.yaml"), {"servers": {"rest": entry}})).servers["rest"]
    assert isinstance(spec, OpenApiUpstream)
    assert (spec.include, spec.exclude, spec.names) == (("items", "getNotice"), ("deleteItem",), entry["names"])
    assert spec.route_map[0].methods == ("GET",) and spec.route_map[0].mcp_type == "resource"
