"""Class 1: what a caller sends through register_service is data, never expanded from the environment.

A secret lives only in this test's environment. Each payload that some expander could read as a
reference to it goes into every field a caller controls; then everything the gateway shows or
sends is read back (list_services, gateway://health, /v0.1/servers, servers.yaml, and the bytes
the gateway sends to a listener the caller chose): the literal text is there, the secret is not.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import yaml
from mcp import Client, MCPError

from aggregator.http.registry_api import GATEWAY_META
from aggregator.registry.models import StreamableHttpUpstream, load_servers
from aggregator.upstreams.state import UpstreamState
from tests.harness import ERAS, Era, LiveGateway, serve_gateway, token_for, unchanged
from tests.policies import admins_policy
from tests.security.recorder import Recorder, recording_listener

pytestmark = pytest.mark.anyio

VARIABLE = "MCP_AGGREGATOR_KEY_PROBE"
SECRET = "s3cr3t-value-only-in-this-test-7f1c"
UNSET = "MCP_AGGREGATOR_KEY_NEVER_SET_4411"
SCOPES = admins_policy(methods=("tools/list", "tools/call", "resources/list", "resources/read"))

PAYLOADS = [
    f"${{{VARIABLE}}}",
    f"${VARIABLE}",
    f"${{{VARIABLE}:-fallback}}",
    f"${{{VARIABLE}-fallback}}",
    f"$${{{VARIABLE}}}",
    f"${{${{{VARIABLE}}}}}",
    f"${{{VARIABLE}}}${{{VARIABLE}}}",
    f"prefix-${{{VARIABLE}}}-suffix",
    f"\uff04{{{VARIABLE}}}",  # full-width dollar
    f"\ufe69{{{VARIABLE}}}",  # small dollar
    f"%24%7B{VARIABLE}%7D",
    f"{{{VARIABLE}}}",
    f"{{{{{VARIABLE}}}}}",
    f"${{env:{VARIABLE}}}",
    f"$(printenv {VARIABLE})",
    f"`printenv {VARIABLE}`",
    f"%{VARIABLE}%",
    f"${{{UNSET}}}",
]


@dataclass(frozen=True)
class Probe:
    live: LiveGateway
    recorder: Recorder


@pytest.fixture(scope="module")
async def probe(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Probe]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(VARIABLE, SECRET)
        async with (
            recording_listener() as recorder,
            serve_gateway(
                tmp_path_factory.mktemp("caller-input"),
                servers={},
                scopes=SCOPES,
                admin_allowed_networks=["127.0.0.0/8"],
                backoff_initial=5.0,
                backoff_max=30.0,
            ) as live,
        ):
            yield Probe(live, recorder)


def cases() -> Iterator[Any]:
    for index, payload in enumerate(PAYLOADS):
        for era in ERAS:
            yield pytest.param(index, payload, era, id=f"{era}-{index}")


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def register(client: Client, arguments: dict[str, Any]) -> types.CallToolResult:
    return await client.call_tool("register_service", arguments)


@pytest.mark.parametrize(("index", "payload", "era"), list(cases()))
async def test_a_payload_in_every_free_field_is_kept_as_written_and_never_expanded(
    probe: Probe, index: int, payload: str, era: Era
) -> None:
    live, recorder = probe.live, probe.recorder
    name = f"probe-{era}-{index}"
    marker = f"/{name}/"
    quoted = urllib.parse.quote(payload, safe="")
    url = f"http://127.0.0.1:{recorder.port}{marker}{quoted}?q={quoted}"
    async with live.admin(era) as admin:
        result = await register(
            admin, {"service_name": name, "url": url, "description": payload, "tags": [payload, "plain"]}
        )
        assert not result.is_error, text_of(result)
        assert SECRET not in text_of(result)
        await recorder.wait_for(lambda r: marker.encode() in r.everything)
        await live.gateway.pool.wait_until(lambda pool: pool.get(name).state is UpstreamState.UNHEALTHY)

        listed = (await admin.call_tool("list_services", {})).structured_content
        assert listed is not None
        mine = next(s for s in listed["services"] if s["name"] == name)
        assert (mine["description"], mine["tags"]) == (payload, [payload, "plain"])
        health = await admin.read_resource("gateway://health")
        health_text = "".join(getattr(c, "text", "") for c in health.contents)
        assert SECRET not in json.dumps(listed) + health_text
        assert json.dumps(mine) in json.dumps(json.loads(health_text))
    async with live.http(token_for("root", groups=["admins"])) as http:
        registry = (await http.get("/v0.1/servers", params={"limit": 100})).text
    assert SECRET not in registry
    published = next(s for s in json.loads(registry)["servers"] if s["server"]["name"].endswith(f"/{name}"))
    assert published["server"]["description"].startswith(payload[:60])
    assert payload in published["_meta"][GATEWAY_META]["tags"]

    sent = [chunk for chunk in recorder.received if marker.encode() in chunk]
    request_line = sent[0].split(b"\r\n", 1)[0].decode()
    assert request_line.split(" ")[1] == f"{marker}{quoted}?q={quoted}"
    assert all(SECRET.encode() not in chunk for chunk in recorder.received)
    entry = load_servers(live.servers_file).servers[name]
    assert isinstance(entry, StreamableHttpUpstream)
    assert (entry.description, entry.url, entry.registered_by) == (payload, url, "root")
    assert SECRET not in live.servers_file.read_text()

    async with live.admin(era) as admin:
        assert not (await admin.call_tool("remove_service", {"service_name": name})).is_error


@pytest.mark.parametrize("era", ERAS)
async def test_toggling_a_registered_server_keeps_its_fields_as_data(probe: Probe, era: Era) -> None:
    live = probe.live
    name = f"toggled-{era}"
    payload = f"${{{VARIABLE}}}"
    async with live.admin(era) as admin:
        url = f"http://127.0.0.1:{probe.recorder.port}/{name}"
        assert not (await register(admin, {"service_name": name, "url": url, "description": payload})).is_error
        for enabled in (False, True):
            assert not (await admin.call_tool("toggle_service", {"service_name": name, "enabled": enabled})).is_error
        listed = (await admin.call_tool("list_services", {})).structured_content
        assert listed is not None
        assert next(s for s in listed["services"] if s["name"] == name)["description"] == payload
        assert not (await admin.call_tool("remove_service", {"service_name": name})).is_error
    assert SECRET not in json.dumps(listed)


REFUSED_FIELDS = [
    ("service_name", lambda p: {"service_name": p, "url": "http://example.com/mcp"}),
    ("prefix", lambda p: {"service_name": "refused-prefix", "url": "http://example.com/mcp", "prefix": p}),
    ("url host", lambda p: {"service_name": "refused-host", "url": f"http://{p}/mcp"}),
    ("url path", lambda p: {"service_name": "refused-path", "url": f"http://example.com/{p}"}),
    ("url scheme", lambda p: {"service_name": "refused-scheme", "url": f"{p}://example.com/mcp"}),
    ("headers", lambda p: {"service_name": "refused-headers", "url": "http://example.com/", "headers": {"X": p}}),
    ("env", lambda p: {"service_name": "refused-env", "transport": "stdio", "template": "x", "env": {"X": p}}),
    ("args", lambda p: {"service_name": "refused-args", "transport": "stdio", "args": [p]}),
    (
        "template value",
        lambda p: {"service_name": "refused-value", "transport": "stdio", "template": "t", "values": {"v": p}},
    ),
    ("registered_by", lambda p: {"service_name": "forged", "url": "http://example.com/", "registered_by": p}),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("field", "build"), REFUSED_FIELDS, ids=[f for f, _ in REFUSED_FIELDS])
async def test_a_refusal_reveals_neither_the_secret_nor_whether_a_variable_exists(
    probe: Probe, field: str, build: Any, era: Era
) -> None:
    live = probe.live
    with unchanged(live.servers_file):
        async with live.admin(era) as admin:
            answers = []
            for variable in (VARIABLE, UNSET):
                arguments = build(f"${{{variable}}}")
                try:
                    result = await register(admin, arguments)
                    assert result.is_error, (field, arguments)
                    message = text_of(result)
                except MCPError as error:
                    message = error.message
                assert SECRET not in message
                answers.append(message.replace(variable, "VAR"))
        assert answers[0] == answers[1], "the answer differs between a set and an unset variable"


OPERATOR_FILE = {
    "servers": {
        "operator": {"transport": "streamable-http", "url": "http://example.com/mcp", "description": "${PROBE_VAR}"},
        "registered": {
            "transport": "streamable-http",
            "url": "http://example.com/mcp",
            "description": "${PROBE_VAR}",
            "registered_by": "alice",
        },
    }
}


def test_only_the_operators_own_entries_read_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_VAR", SECRET)
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump(OPERATOR_FILE))
    servers = load_servers(path).servers
    assert servers["operator"].description == SECRET
    assert servers["registered"].description == "${PROBE_VAR}"
    assert servers["registered"].registered_by == "alice"
