"""`recent_activity`: the audit log read back through the gateway's own MCP tool, as real principals."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from aggregator.tools.activity import SCAN_LIMIT, UNRESOLVED, read_tail, summarise
from tests.harness import ADMIN, LiveGateway, call_structured, serve_gateway, tool_names
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def audited(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[LiveGateway]:
    servers = {"weather": {"transport": "streamable-http", "url": weather_url}}
    directory = tmp_path_factory.mktemp("activity")
    async with serve_gateway(directory, servers=servers, scopes=ADMIN_SCOPES, rate_limit_per_second=0) as live:
        yield live


async def test_admins_read_the_latest_entries_and_numbers_per_upstream(audited: LiveGateway) -> None:
    async with audited.member("users") as user:
        await user.call_tool("weather__get_forecast", {"city": "Paris"})
        with pytest.raises(MCPError, match="Unknown tool"):
            await user.call_tool("weather__get_forcast", {"city": "Paris"})
    async with audited.member("admins", path=ADMIN) as admin:
        activity = await call_structured(admin, "recent_activity", {})
        latest = await call_structured(admin, "recent_activity", {"limit": 1})
    assert activity["you"] == "user-admins" and activity["audit_log"] is True
    entries = activity["entries"]
    assert len(latest["entries"]) == 1 and latest["entries"][0]["principal"] == "user-admins"
    calls = [(e["principal"], e["name"], e["decision"], e["outcome"]) for e in entries if e["method"] == "tools/call"]
    assert ("user-users", "weather__get_forecast", "allow", "ok") in calls
    assert ("user-users", "weather__get_forcast", "deny", "UnknownNameError") in calls
    weather = activity["upstreams"]["weather"]
    assert weather["calls"] >= 1 and weather["error_rate"] == 0.0 and weather["p95_ms"] > 0
    assert activity["upstreams"][UNRESOLVED]["error_rate"] == 1.0
    assert activity["total"]["calls"] >= 2 and activity["window_seconds"] == 60


async def test_only_principals_who_may_list_every_server_read_the_audit_log(audited: LiveGateway) -> None:
    async with audited.member("users", path=ADMIN) as user:
        assert "recent_activity" not in await tool_names(user)
    async with audited.member("operators", path=ADMIN) as operator:
        assert "recent_activity" in await tool_names(operator)  # list_service for weather only: visible, but refused
        with pytest.raises(MCPError, match="needs the list_service permission for all servers"):
            await operator.call_tool("recent_activity", {})
    async with audited.member("admins", path=ADMIN) as admin:
        refused = await admin.call_tool("recent_activity", {"limit": 0})
    assert refused.is_error
    assert "Invalid arguments for recent_activity: limit: Input should be greater than or equal to 1" in str(
        refused.content
    )


def entry(seconds_ago: float, name: str, outcome: str = "ok", latency: float = 1.0, now: float = 0.0) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - seconds_ago)) + ".000Z"
    return {"time": stamp, "method": "tools/call", "name": name, "outcome": outcome, "latency_ms": latency}


def test_the_tail_is_read_from_the_end_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = [json.dumps({"n": index}) for index in range(20_000)]
    log.write_text("\n".join(lines[:10]) + "\n{torn\n" + "\n".join(lines[10:]) + "\n")
    assert [e["n"] for e in read_tail(log, 3)] == [19_997, 19_998, 19_999]
    assert [e["n"] for e in read_tail(log, 20_005)][:11] == list(range(11))
    assert read_tail(tmp_path / "missing.log", 10) == []


def test_headline_numbers_cover_the_window_only() -> None:
    now = 1_800_000_000.0
    entries = [entry(120, "a__x", now=now)] + [
        entry(10, "a__x", latency=float(index), now=now) for index in range(1, 21)
    ]
    entries += [entry(5, "b__y", outcome="UpstreamTimeoutError", latency=2000.0, now=now)]
    numbers = summarise(entries, lambda method, name: (name or "").split("__")[0], window=60, now=now)
    assert numbers["upstreams"]["a"] == {"calls": 20, "calls_per_second": 0.333, "error_rate": 0.0, "p95_ms": 19.0}
    assert numbers["upstreams"]["b"] == {"calls": 1, "calls_per_second": 0.017, "error_rate": 1.0, "p95_ms": 2000.0}
    assert numbers["total"]["calls"] == 21 and numbers["total"]["error_rate"] == round(1 / 21, 4)
    assert SCAN_LIMIT >= 1000
