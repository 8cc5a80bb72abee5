"""`mcp-aggregator index` and `search`, run as printed: the stored index (operator) or a gateway (caller).

`index` connects to the upstreams once and shows each step (upstreams, model, embedding counts);
`search` then answers from the stored index with every upstream gone, and with `--url` asks a
running gateway with the caller's token, which never shows a tool that token may not call.
The commands run in-process (`main()`), except where the process is what is looked at: the
hybrid search (the model's own progress bar stays off its stderr) and `serve` with stdio children.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from aggregator.cli.finder import FINDER as CLI_FINDER
from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.tools.finder import FINDER
from tests.commands import Ran, run_command_in_thread, run_command_process
from tests.conftest import gateway_process, wait_connected
from tests.harness import LiveGateway, serve_gateway, token_for

pytestmark = pytest.mark.anyio
SCOPES = """
finder: [{server: mcpgw, methods: [tools/list, tools/call], tools: [intelligent_tool_finder]}]
echo-only: [{server: echo, methods: [tools/list, tools/call], tools: ["*"]}]
everything: [{server: "*", methods: [tools/list, tools/call], tools: ["*"]}]
"""
FORGER = AuthSettings(gateway_keys=(GatewayKeySettings(kid="tests", secret=SecretStr("another-secret-" * 4)),))
"""Signs tokens the test gateways do not accept."""
WEATHER_TOOLS = ("weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts")


@dataclass(frozen=True, slots=True)
class Stored:
    config: Path
    servers: Path
    indexed: Ran


@pytest.fixture(scope="module")
async def stored(tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str) -> Stored:
    """An index built by `mcp-aggregator index` from two live upstreams."""
    directory = tmp_path_factory.mktemp("stored")
    servers = directory / "servers.yaml"
    upstreams = {
        "weather": {"transport": "streamable-http", "url": weather_url, "description": "Weather forecasts"},
        "echo": {"transport": "streamable-http", "url": echo_url},
    }
    servers.write_text(yaml.safe_dump({"servers": upstreams}))
    config = directory / "gateway.yaml"
    config.write_text(f"servers_file: servers.yaml\ndata_dir: {directory / 'data'}\n")
    indexed = await run_command_in_thread("index", "--config", str(config))
    assert indexed.returncode == 0, indexed.stderr
    return Stored(config, servers, indexed)


async def test_index_shows_every_step_with_counts(stored: Stored) -> None:
    steps = stored.indexed.stderr.splitlines()
    assert steps[0] == "upstreams: connecting 2 (each within 20s)"
    assert "upstreams: 2 of 2 connected; 7 tools" in steps
    assert any(step.startswith("model: loaded in ") for step in steps), steps
    embedded = [step for step in steps if step.startswith("embedding texts: ")]
    assert embedded and " in " in embedded[-1], steps  # the summary line: n/n in <time> (<rate>/s)
    count = embedded[-1].split()[2].split("/")
    assert count[0] == count[1] != "0"
    assert "7 tools (7 added, 0 updated, 0 removed, 0 unchanged; " in stored.indexed.stdout
    assert "chance of deadlock" not in stored.indexed.stderr


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("forecast", "weather__get_forecast"),
        ("alerts", "weather__list_weather_alerts"),
        ("echo", "echo__echo"),
    ],
)
async def test_search_answers_from_the_stored_index_with_every_upstream_gone(
    stored: Stored, tmp_path: Path, query: str, first: str
) -> None:
    gone = tmp_path / "gateway.yaml"  # the same index; upstreams that could never be reached
    gone.write_text(
        f"servers_file: {tmp_path / 'none.yaml'}\ndata_dir: {stored.config.parent / 'data'}\nconnect_timeout: 0.1\n"
    )
    found = await run_command_in_thread("search", "--config", str(gone), query, "--full-text", "--top-k", "3")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].endswith("7 stored tools, every one (operator view); full-text search")
    assert lines[1].split()[1] == f"{first}:", found.stdout
    assert "not reachable" not in found.stdout + found.stderr


async def test_search_ranks_by_meaning_once_the_model_loads(stored: Stored) -> None:
    query = "will it rain in Lisbon tomorrow"
    found = await run_command_process("search", "--config", str(stored.config), query, "--top-k", "2")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].endswith("; hybrid search"), found.stdout
    assert lines[1].split()[1].removesuffix(":") in WEATHER_TOOLS, found.stdout
    assert "Loading weights" not in found.stderr  # the model's own progress bar stays quiet


async def test_search_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    found = await run_command_in_thread("search", "--config", str(config), "anything")
    assert found.returncode == 1
    assert f"no tool index at {tmp_path / 'data' / 'index'}: run `mcp-aggregator index --config FILE`" in found.stderr


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "echo": {"transport": "streamable-http", "url": echo_url},
    }
    async with serve_gateway(tmp_path_factory.mktemp("asked"), servers=servers, scopes=SCOPES) as live:
        yield live


@pytest.mark.parametrize(
    ("scopes", "how", "shown", "hidden"),
    [
        (["finder", "everything"], "--token", ["weather__get_forecast"], []),
        (["finder", "everything"], "environment", ["weather__get_forecast"], []),
        (["finder", "echo-only"], "--token", ["echo__echo"], list(WEATHER_TOOLS)),
        (["finder", "echo-only"], "environment", ["echo__echo"], list(WEATHER_TOOLS)),
    ],
)
async def test_a_gateway_is_asked_as_the_tokens_caller_and_shows_only_what_it_may_call(
    gateway: LiveGateway, scopes: Sequence[str], how: str, shown: list[str], hidden: list[str]
) -> None:
    token = token_for("searcher", scopes=scopes)
    arguments = ["search", "weather forecast or echo text", "--url", gateway.url, "--top-k", "4"]
    if how == "--token":
        found = await run_command_in_thread(*arguments, "--token", token)
    else:
        found = await run_command_in_thread(*arguments, environment={"MCP_AGGREGATOR_TOKEN": token})
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(f"{gateway.url}: the tools this token may call;"), found.stdout
    for name in shown:
        assert f"  {name}" in found.stdout, found.stdout
    for name in hidden:
        assert name not in found.stdout, found.stdout


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "401 a bearer token is required (set $MCP_AGGREGATOR_TOKEN or pass --token)"),
        ("not-a-token", "401 "),
        (token_for("forged", scopes=["finder"], auth=FORGER), "401 "),
        (token_for("no-finder", scopes=["echo-only"]), f"Unknown tool '{FINDER}'"),
    ],
)
async def test_a_refused_search_says_why_and_fails(gateway: LiveGateway, token: str | None, message: str) -> None:
    arguments = ["search", "weather", "--url", gateway.url]
    found = await run_command_in_thread(*arguments, *(["--token", token] if token else []))
    assert found.returncode == 1
    assert f"mcp-aggregator: {gateway.url} refused the search: " in found.stderr
    assert message in found.stderr, found.stderr
    assert "Traceback" not in found.stderr
    assert len(found.stderr.splitlines()) == 1, found.stderr


def test_the_cli_asks_for_the_finder_by_its_name() -> None:
    assert CLI_FINDER == FINDER


async def test_serving_stdio_upstreams_prints_no_lancedb_fork_warning(tmp_path: Path) -> None:
    """uvloop runs after-fork hooks in each stdio child; LanceDB's warned there of a deadlock that cannot happen."""
    servers = tmp_path / "servers.yaml"
    servers.write_text("servers:\n  time:\n    transport: stdio\n    command: mcp-server-time\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    async with gateway_process(servers, "--config", str(config)) as (_, process):
        await wait_connected(process, "time")
    assert "upstream.connected upstream=time" in process.output
    assert "lancedb fork support" not in process.output
