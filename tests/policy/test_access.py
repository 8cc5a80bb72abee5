"""Who sees and calls what, end to end: a real gateway with auth, real upstreams, real OIDC tokens.

The leak test: for every principal x every exported tool, `tools/list` shows exactly the tools
scopes.yml allows, a call succeeds exactly for those, and a refused call looks like a call to a
tool that does not exist (no hint of hidden names).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from mcp import MCPError

from aggregator.config.settings import OidcIssuerSettings
from aggregator.server.edge import RATE_LIMITED
from tests.conftest import REPOSITORY
from tests.harness import AUTH, ERAS, Era, LiveGateway, connected, serve_gateway, token_for
from tests.policy.oidc import (
    Audience,
    OidcProvider,
    oidc_provider,
    requires_oidc_provider,
    rsa_jwk,
)
from tests.policy.oidc import (
    Client as OidcClient,
)

pytestmark = [pytest.mark.anyio, requires_oidc_provider]
AUDIENCE = "urn:mcp-aggregator:test"
NOTES_SERVER = "examples.servers.notes"

SCOPES = """
group_mappings:
  platform-team: [mcp-servers-unrestricted/read, mcp-servers-unrestricted/execute]
  notes-team: [notes/all]
UI-Scopes:
  mcp-registry-admin:
    list_service: [all]
mcp-servers-unrestricted/read:
- server: "*"
  methods: [initialize, tools/list]
  tools: ["*"]
mcp-servers-unrestricted/execute:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
weather/forecast:
- server: weather
  methods: [tools/list, tools/call]
  tools: [get_forecast]
notes/all:
- server: notes
  methods: [tools/list, tools/call]
  tools: ["*"]
echo/list-only:
- server: echo
  methods: [tools/list]
  tools: ["*"]
notes/listers:
- server: notes
  methods: [tools/call]
  tools: ["list_*"]
"""

WEATHER = {"weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts"}
NOTES = {"notes__add_note", "notes__search_notes", "notes__list_notes", "notes__delete_note"}
ECHO = {"echo__echo", "echo__add", "echo__slow", "echo__fail"}
ALL = WEATHER | NOTES | ECHO
ARGUMENTS: dict[str, dict[str, Any]] = {
    "weather__get_forecast": {"city": "Oslo"},
    "weather__get_current_conditions": {"city": "Oslo"},
    "weather__list_weather_alerts": {"region": "north"},
    "notes__add_note": {"title": "t", "body": "b"},
    "notes__search_notes": {"query": "t"},
    "notes__list_notes": {},
    "notes__delete_note": {"note_id": "note-999"},
    "echo__echo": {"text": "x"},
    "echo__add": {"a": 1, "b": 2},
    "echo__slow": {"seconds": 0},
    "echo__fail": {"message": "m"},
}


@pytest.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    clients = [
        OidcClient("notes-app", "notes-secret", scopes=("mcp",), groups=("notes-team",)),
        OidcClient("platform-app", "platform-secret", scopes=("mcp",), groups=("platform-team",)),
    ]
    directory = tmp_path_factory.mktemp("provider")
    async with oidc_provider(directory, clients=clients, audience=Audience(AUDIENCE), keys=[rsa_jwk("r1")]) as started:
        yield started


@pytest.fixture(scope="module")
async def secured(
    tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "echo": {"transport": "streamable-http", "url": echo_url},
        "notes": {
            "transport": "stdio",
            "command": sys.executable,
            "args": ["-m", NOTES_SERVER],
            "cwd": str(REPOSITORY),
        },
    }
    issuer = OidcIssuerSettings(issuer=provider.issuer, audiences=(AUDIENCE,), algorithms=("RS256",))
    async with serve_gateway(
        tmp_path_factory.mktemp("secured"),
        servers=servers,
        scopes=SCOPES,
        auth=AUTH.model_copy(update={"oidc_issuers": (issuer,), "authorization_servers": (provider.issuer,)}),
        scopes_reload_interval=0.2,
        rate_limit_per_second=0.05,
        rate_limit_burst=40,
    ) as live:
        await live.wait_until(connected(*servers))
        yield live


def token(subject: str, scopes: list[str] = [], groups: list[str] = []) -> str:  # noqa: B006
    return token_for(subject, scopes=scopes, groups=groups)


async def principals(provider: OidcProvider) -> dict[str, tuple[str, set[str]]]:
    """Each principal's token and exactly the tools scopes.yml lets it call."""
    return {
        # server "*" includes the gateway's own server (mcpgw): the finder tools need no UI permission; the
        # management tools (generate_token too) are served on /mcp/admin only.
        "platform via OIDC groups": (
            await provider.token("platform-app", "platform-secret", "mcp"),
            ALL | {"intelligent_tool_finder", "describe_tool", "call_tool"},
        ),
        "notes via OIDC groups": (await provider.token("notes-app", "notes-secret", "mcp"), NOTES),
        "forecast only": (token("fc", ["weather/forecast"]), {"weather__get_forecast"}),
        "list-only scope and list_* tools": (
            token("lister", ["echo/list-only", "notes/listers"]),
            {"notes__list_notes"},
        ),
        "group mapping in a minted token": (token("nt", groups=["notes-team"]), NOTES),
        "no scopes": (token("nobody"), set()),
        "unknown scope": (token("ghost", ["does/not-exist"]), set()),
    }


@pytest.mark.parametrize("mode", ERAS)
async def test_every_principal_sees_and_calls_exactly_what_scopes_allow(
    secured: LiveGateway, provider: OidcProvider, mode: Era
) -> None:
    for who, (bearer, allowed) in (await principals(provider)).items():
        async with secured.client(token=bearer, era=mode) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert listed == allowed, who
            for name in sorted(ALL):
                if name in allowed:
                    result = await client.call_tool(name, ARGUMENTS[name])
                    assert isinstance(result, types.CallToolResult), (who, name)
                    continue
                with pytest.raises(MCPError) as caught:
                    await client.call_tool(name, ARGUMENTS[name])
                assert caught.value.code == types.INVALID_PARAMS, (who, name)
                assert caught.value.message.startswith(f"Unknown tool '{name}'."), (who, name)
                hinted = set(re.findall(r"'([^']+)'", caught.value.message)) - {name}
                assert hinted <= allowed, (who, name, hinted)


async def test_a_caller_without_a_token_is_challenged_and_can_discover_the_authorization_server(
    secured: LiveGateway,
    provider: OidcProvider,
) -> None:
    base = secured.base
    async with secured.http() as http:
        response = await http.post(secured.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge == f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        metadata = (await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["resource"] == secured.url
        assert metadata["authorization_servers"] == [provider.issuer]
        bad = await http.post(secured.url, headers={"Authorization": "Bearer garbage"}, json={})
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
        assert bad.json()["error_description"] == "token is not a well-formed JWT"
        sse = await http.get(f"{base}/sse")
        assert sse.status_code == 401
    assert "garbage" not in secured.log.output
    assert 'auth.rejected reason="token is not a well-formed JWT"' in secured.log.output


async def test_an_edited_scopes_file_takes_effect_and_a_broken_edit_keeps_the_last_good_policy(
    secured: LiveGateway,
) -> None:
    bearer = token("reloader", ["weather/forecast"])
    original = secured.scopes_file.read_text()
    try:
        mark = secured.log.mark()
        secured.scopes_file.write_text(original.replace("tools: [get_forecast]", "tools: [get_forecast, list_*]"))
        await secured.log.wait_for("policy.reloaded", 30, mark)
        async with secured.client(token=bearer) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {
                "weather__get_forecast",
                "weather__list_weather_alerts",
            }
        mark = secured.log.mark()
        secured.scopes_file.write_text(original + "\nbroken: [unclosed\n")
        await secured.log.wait_for("policy.reload_failed", 30, mark)
        async with secured.client(token=bearer) as client:
            assert len((await client.list_tools()).tools) == 2
        async with secured.http(token("operator", ["mcp-registry-admin"])) as http:  # readyz details
            ready = (await http.get("/readyz")).json()
        assert "invalid YAML" in ready["policy_error"]
    finally:
        mark = secured.log.mark()
        secured.scopes_file.write_text(original)
        await secured.log.wait_for("policy.reloaded", 30, mark)


async def test_a_caller_over_its_rate_limit_is_told_when_to_retry(secured: LiveGateway) -> None:
    bearer = token("hasty", ["weather/forecast"])
    refusals: list[MCPError] = []
    async with secured.client(token=bearer) as client:
        for _ in range(60):  # the burst is 40, refilled at 0.05 per second
            try:
                await client.call_tool("weather__get_forecast", {"city": "Rome"})
            except MCPError as error:
                refusals.append(error)
    assert refusals, "no call was refused"
    assert {error.code for error in refusals} == {RATE_LIMITED}
    assert re.fullmatch(r"Rate limit exceeded for 'hasty'; retry after \d+\.\d s\.", refusals[0].message)


async def test_decisions_are_audited_without_secrets(secured: LiveGateway) -> None:
    bearer = token("audited", ["weather/forecast"])
    async with secured.client(token=bearer) as client:
        await client.call_tool("weather__get_forecast", {"city": "Paris"})
        with pytest.raises(MCPError):
            await client.call_tool("echo__echo", {"text": "no"})
    lines = [json.loads(line) for line in secured.audit_log.read_text().splitlines()]
    mine = [(e["method"], e["name"], e["decision"]) for e in lines if e["principal"] == "audited"]
    assert ("tools/call", "weather__get_forecast", "allow") in mine
    assert ("tools/call", "echo__echo", "deny") in mine
    assert bearer not in secured.audit_log.read_text()
    assert bearer not in secured.log.output
