"""Class 9: the audit log states the decision the policy made and the outcome the caller saw, for every method.

Each case runs one request as its own principal through a real secured gateway (in-process, both
eras) and then reads that principal's audit line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, MCPError

from tests.harness import ERAS, Era, LiveGateway, serve_gateway, serve_upstream

pytestmark = pytest.mark.anyio

SCOPES = """
group_mappings:
  reader: [weather-calls, weather-read, echo-calls]
  nobody: []
weather-calls:
- server: weather
  methods: [tools/list, tools/call]
  tools: [get_forecast]
weather-read:
- server: weather
  methods: [resources/list, resources/read, resources/subscribe, prompts/list, prompts/get, completion/complete]
echo-calls:
- server: echo
  methods: [tools/list, tools/call]
  tools: [echo, fail]
"""
CITIES = "weather+weather://cities"
CLIENT_INFO = types.Implementation(name="audit-probe", version="1.2.3")
CLIENT_NAME = "audit-probe/1.2.3"

Action = Callable[[Client], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    label: str
    group: str
    method: str
    name: str | None
    action: Action
    decision: str
    outcome: str
    eras: tuple[Era, ...] = ERAS


CASES = [
    Case(
        "allowed call",
        "reader",
        "tools/call",
        "weather__get_forecast",
        lambda c: c.call_tool("weather__get_forecast", {"city": "Lisbon"}),
        "allow",
        "ok",
    ),
    Case(
        "tool error result",
        "reader",
        "tools/call",
        "echo__fail",
        lambda c: c.call_tool("echo__fail", {"message": "boom"}),
        "allow",
        "tool_error",
    ),
    Case(
        "forbidden tool",
        "reader",
        "tools/call",
        "weather__get_current_conditions",
        lambda c: c.call_tool("weather__get_current_conditions", {"city": "Lisbon"}),
        "deny",
        "UnknownNameError",
    ),
    Case(
        "unknown tool",
        "reader",
        "tools/call",
        "nowhere__nothing",
        lambda c: c.call_tool("nowhere__nothing", {}),
        "deny",
        "UnknownNameError",
    ),
    Case(
        "tool of a server with no rule",
        "nobody",
        "tools/call",
        "echo__echo",
        lambda c: c.call_tool("echo__echo", {"text": "x"}),
        "deny",
        "UnknownNameError",
    ),
    Case("allowed read", "reader", "resources/read", CITIES, lambda c: c.read_resource(CITIES), "allow", "ok"),
    Case(
        "denied read", "nobody", "resources/read", CITIES, lambda c: c.read_resource(CITIES), "deny", "UnknownNameError"
    ),
    Case(
        "unknown resource",
        "reader",
        "resources/read",
        "nowhere+x://y",
        lambda c: c.read_resource("nowhere+x://y"),
        "deny",
        "UnknownNameError",
    ),
    Case(
        "resource the upstream does not have",
        "reader",
        "resources/read",
        "weather+weather://nope",
        lambda c: c.read_resource("weather+weather://nope"),
        "allow",
        "UpstreamRejectedError",
    ),
    Case(
        "denied subscribe",
        "nobody",
        "resources/subscribe",
        CITIES,
        lambda c: c.subscribe_resource(CITIES),
        "deny",
        "UnknownNameError",
        ("legacy",),
    ),
    Case(
        "allowed prompt",
        "reader",
        "prompts/get",
        "weather__plan_outdoor_day",
        lambda c: c.get_prompt("weather__plan_outdoor_day", {"city": "Porto"}),
        "allow",
        "ok",
    ),
    Case(
        "denied prompt",
        "nobody",
        "prompts/get",
        "weather__plan_outdoor_day",
        lambda c: c.get_prompt("weather__plan_outdoor_day", {"city": "Porto"}),
        "deny",
        "UnknownNameError",
    ),
    Case("filtered list", "nobody", "tools/list", None, lambda c: c.list_tools(), "allow", "ok"),
]


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    async with serve_upstream("weather") as weather, serve_upstream("echo") as echo:
        servers = {
            "weather": {"transport": "streamable-http", "url": weather},
            "echo": {"transport": "streamable-http", "url": echo},
        }
        async with serve_gateway(
            tmp_path_factory.mktemp("audit"), servers=servers, scopes=SCOPES, rate_limit_per_second=0
        ) as gateway:
            yield gateway


def entries_of(audit: Path, subject: str) -> list[dict[str, Any]]:
    lines = audit.read_text().splitlines() if audit.exists() else []
    return [entry for line in lines if (entry := json.loads(line))["principal"] == subject]


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
async def test_audit_states_decision_and_outcome(live: LiveGateway, case: Case, era: Era) -> None:
    if era not in case.eras:
        pytest.skip(f"{case.method} does not exist in this era")
    subject = f"audit-{case.label.replace(' ', '-')}-{era}"
    async with live.client(subject, groups=[case.group], era=era, client_info=CLIENT_INFO) as client:
        try:
            await case.action(client)
        except MCPError:
            assert case.outcome != "ok", f"{case.label}: the request failed"
    records = [
        e for e in entries_of(live.gateway.settings.data_dir / "audit.log", subject) if e["method"] == case.method
    ]
    assert len(records) == 1, records
    assert records[0]["client"] == CLIENT_NAME  # the program, as it introduced itself
    assert records[0]["client_id"] == subject  # the token's client
    assert (records[0]["name"], records[0]["decision"], records[0]["outcome"]) == (
        case.name,
        case.decision,
        case.outcome,
    )


@pytest.mark.parametrize("era", ERAS)
async def test_rate_limited_calls_are_audited_as_denied(tmp_path: Path, era: Era) -> None:
    async with (
        serve_upstream("echo") as echo,
        serve_gateway(
            tmp_path,
            servers={"echo": {"transport": "streamable-http", "url": echo}},
            scopes=SCOPES,
            rate_limit_per_second=0.001,
            rate_limit_burst=1,
        ) as live,
    ):
        async with live.client("limited", groups=["reader"], era=era) as client:
            await client.call_tool("echo__echo", {"text": "first"})
            with pytest.raises(MCPError):
                await client.call_tool("echo__echo", {"text": "second"})
        calls = [
            e
            for e in entries_of(live.gateway.settings.data_dir / "audit.log", "limited")
            if e["method"] == "tools/call"
        ]
    assert [(e["decision"], e["outcome"]) for e in calls] == [("allow", "ok"), ("deny", "RateLimitedError")]
