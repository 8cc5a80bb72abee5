"""Prometheus /metrics on a real secured gateway: who may scrape, counters after real calls, upstream health."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp import MCPError

from aggregator.server.metrics import CONTENT_TYPE, Metrics, exposition, upstream_gauges
from tests.harness import ADMIN, LiveGateway, free_port, member_token, serve_gateway
from tests.http.conftest import SCOPES

pytestmark = pytest.mark.anyio
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(live: LiveGateway, groups: list[str] | None = ["admins"]) -> httpx2.Response:  # noqa: B006
    """GET /metrics as a member of `groups` (anonymously with None)."""
    async with live.http(member_token(groups) if groups is not None else None) as http:
        return await http.get("/metrics")


async def scraped_samples(live: LiveGateway) -> Samples:
    response = await scrape(live)
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    """Every sample of a text exposition; fails on any line that is not valid in the format."""
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a valid exposition line: {line!r}"
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
async def scraped(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    servers = {
        "echo": {"transport": "streamable-http", "url": echo_url},
        "down": {"transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp", "timeout": 1},
    }
    directory = tmp_path_factory.mktemp("metrics")
    async with serve_gateway(directory, servers=servers, scopes=SCOPES, rate_limit_per_second=0) as live:
        yield live


async def call(live: LiveGateway, tool: str, arguments: dict[str, object]) -> MCPError | None:
    """Call `tool` as an admin (on /mcp/admin: every tool); the MCP error it was answered with, if any."""
    async with live.member("admins", path=ADMIN) as client:
        try:
            await client.call_tool(tool, arguments)
        except MCPError as error:
            return error
    return None


async def test_scraping_needs_list_service_for_all_servers(scraped: LiveGateway) -> None:
    anonymous = await scrape(scraped, None)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer resource_metadata=")
    operator = await scrape(scraped, ["echo-operators"])  # list_service for echo only
    assert operator.status_code == 403
    assert "list_service for all servers" in operator.json()["error"]
    admin = await scrape(scraped, ["admins"])
    assert admin.status_code == 200
    assert admin.headers["content-type"] == CONTENT_TYPE


async def test_calls_move_the_counters_and_the_latency_histogram(scraped: LiveGateway) -> None:
    before = await scraped_samples(scraped)
    await call(scraped, "echo__echo", {"text": "one"})
    await call(scraped, "echo__echo", {"text": "two"})
    await call(scraped, "echo__fail", {"message": "a tool error is still an answered call"})
    assert await call(scraped, "echo__ech0", {"text": "typo"}) is not None
    after = await scraped_samples(scraped)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    call_labels = {"method": "tools/call", "upstream": "echo", "tool": "echo__echo"}
    assert moved("mcp_aggregator_requests_total", **call_labels, outcome="ok") == 2
    assert moved("mcp_aggregator_request_duration_seconds_count", **call_labels) == 2
    assert moved("mcp_aggregator_request_duration_seconds_bucket", **call_labels, le="+Inf") == 2
    fail_labels = {"method": "tools/call", "upstream": "echo", "tool": "echo__fail", "outcome": "tool_error"}
    assert moved("mcp_aggregator_requests_total", **fail_labels) == 1
    unknown = {"method": "tools/call", "upstream": "", "tool": "", "outcome": "UnknownNameError"}
    assert moved("mcp_aggregator_requests_total", **unknown) == 1
    assert moved("mcp_aggregator_request_errors_total", **unknown) == 1
    assert "echo__ech0" not in (await scrape(scraped)).text  # what callers type never becomes a label


async def test_the_gateways_own_tools_count_under_its_server_name(scraped: LiveGateway) -> None:
    before = await scraped_samples(scraped)
    await call(scraped, "list_services", {})
    after = await scraped_samples(scraped)
    labels = {"method": "tools/call", "upstream": "mcpgw", "tool": "list_services", "outcome": "ok"}
    assert (
        value(after, "mcp_aggregator_requests_total", **labels)
        - value(before, "mcp_aggregator_requests_total", **labels)
        == 1
    )


async def test_health_gauges_show_a_dead_upstream(scraped: LiveGateway) -> None:
    samples = await scraped_samples(scraped)
    assert value(samples, "mcp_aggregator_upstream_state", upstream="down", state="unhealthy") == 1
    assert value(samples, "mcp_aggregator_upstream_state", upstream="down", state="healthy") == 0
    assert value(samples, "mcp_aggregator_upstream_state", upstream="echo", state="healthy") == 1
    states = [key for key in samples if key[0] == "mcp_aggregator_upstream_state" and ("upstream", "echo") in key[1]]
    assert len(states) == 6  # one gauge per state, exactly one of them 1
    assert value(samples, "mcp_aggregator_upstream_tools", upstream="echo") == 4
    assert value(samples, "mcp_aggregator_upstream_tools", upstream="down") == 0
    assert value(samples, "mcp_aggregator_upstream_probe_seconds", upstream="echo") > 0


async def test_metrics_can_be_public(tmp_path: Path) -> None:
    async with (
        serve_gateway(tmp_path, servers={}, scopes=SCOPES, metrics_public=True) as live,
        live.http() as http,
    ):
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE mcp_aggregator_requests_total counter" in response.text


def test_the_exposition_escapes_labels_and_keeps_buckets_cumulative() -> None:
    metrics = Metrics(lambda method, name: ('odd "up"\\stream', "line\nbreak"))
    for seconds in (0.001, 0.2, 0.2, 100.0):
        metrics.observe_request("tools/call", "x", "ok", seconds)
    metrics.observe_finder(0.004, "hybrid")
    text = metrics.render([])
    samples = parse(text)
    labels = {"method": "tools/call", "upstream": 'odd \\"up\\"\\\\stream', "tool": "line\\nbreak"}
    buckets = [
        value(samples, "mcp_aggregator_request_duration_seconds_bucket", **labels, le=le)
        for le in ("0.005", "0.25", "60", "+Inf")
    ]
    assert buckets == [1, 3, 3, 4]
    assert value(samples, "mcp_aggregator_request_duration_seconds_sum", **labels) == pytest.approx(100.401)
    assert value(samples, "mcp_aggregator_finder_duration_seconds_count", mode="hybrid") == 1
    assert text.endswith("\n") and exposition(upstream_gauges([])).count("# TYPE") == 3
