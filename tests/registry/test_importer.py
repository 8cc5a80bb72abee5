"""`mcp-aggregator import`: mcp-gateway-registry's server records merged into servers.yaml, by the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mcp_types as types
import pytest
import yaml
from mcp import Client

from aggregator.registry.importer import import_into
from aggregator.registry.models import SseUpstream, StdioUpstream, StreamableHttpUpstream, load_servers
from tests.commands import Ran, run_command, run_command_in_thread
from tests.conftest import REPOSITORY
from tests.harness import connected, serve_gateway

SEED = REPOSITORY / "tests" / "data" / "seed_registry"
EXISTING = {"currenttime": {"transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}


def run_import(*args: str) -> Ran:
    return run_command("import", *args)


def servers_file(directory: Path, servers: dict[str, object] | None = None) -> Path:
    path = directory / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": EXISTING if servers is None else servers}))
    return path


def test_the_seed_directory_is_imported_with_a_reason_for_every_skip(tmp_path: Path) -> None:
    target = servers_file(tmp_path)
    result = run_import(str(SEED), "--servers", str(target))
    assert result.returncode == 0, result.stderr
    report = result.stdout.splitlines()
    assert report[0] == f"{target}: imported 4, skipped 5"
    expected_skips = {
        "half-written.json": "cannot be read as JSON",
        "cloudflare-docs.json": "path '/cloudflare_docs/' does not make a server name",
        "currenttime.json": "'currenttime' is already registered (use --replace to overwrite it)",
        "mcpgw.json": "'mcpgw' is the gateway's own server; its tools are built in",
        "orphan.json": "a remote record without proxy_pass_url",
    }
    for source, reason in expected_skips.items():
        assert any(f"({source}): skipped: {reason}" in line for line in report), (source, result.stdout)
    assert "      note: header Authorization looks like a credential and was not imported" in report

    servers = load_servers(target).servers
    assert list(servers) == ["currenttime", "atlassian", "fininfo", "realserverfaketools", "time-local"]
    currenttime = servers["currenttime"]
    assert isinstance(currenttime, StreamableHttpUpstream) and currenttime.url == "http://127.0.0.1:9/mcp"  # kept
    atlassian = servers["atlassian"]
    assert isinstance(atlassian, StreamableHttpUpstream)
    assert atlassian.url == "http://atlassian-server:8005/mcp/"  # already an MCP endpoint: kept as it is
    assert atlassian.headers == {"X-Atlassian-Cloud-Id": "4d3c2b1a-0000-4000-8000-000000000001"}
    assert atlassian.tags == ("atlassian", "jira", "confluence") and atlassian.enabled
    fininfo = servers["fininfo"]
    assert isinstance(fininfo, SseUpstream)
    assert (fininfo.url, fininfo.enabled) == ("http://fininfo-server:8001/sse", False)  # false in server_state.json
    fake = servers["realserverfaketools"]
    assert isinstance(fake, StreamableHttpUpstream) and fake.url == "http://realserverfaketools-server:8002/mcp"
    local = servers["time-local"]
    assert isinstance(local, StdioUpstream)
    assert (local.command, local.args) == ("uvx", ("mcp-server-time@2026.10.19", "--local-timezone", "UTC"))
    assert not local.enabled  # not listed in server_state.json: disabled, as the seed registry had it
    assert "REDACTED-IN-FIXTURE" not in target.read_text()


def test_existing_entries_change_only_with_replace(tmp_path: Path) -> None:
    target = servers_file(tmp_path)
    assert run_import(str(SEED), "--servers", str(target)).returncode == 0
    imported = target.read_text()

    again = run_import(str(SEED), "--servers", str(target))
    assert again.stdout.splitlines()[0] == f"{target}: imported 0, skipped 9"
    assert target.read_text() == imported  # nothing to change: the file is not even rewritten

    replaced = run_import(str(SEED), "--servers", str(target), "--replace")
    assert replaced.stdout.splitlines()[0] == f"{target}: imported 5, skipped 4"
    assert "  ~ currenttime (currenttime.json): streamable-http http://currenttime-server:8000/mcp, enabled" in (
        replaced.stdout.splitlines()
    )
    currenttime = load_servers(target).servers["currenttime"]
    assert isinstance(currenttime, StreamableHttpUpstream)
    assert currenttime.url == "http://currenttime-server:8000/mcp"
    assert currenttime.tags == ("time", "timezone")


def test_a_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "servers.yaml"
    result = run_import(str(SEED), "--servers", str(target), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{target}: would import 5, skipped 4"
    assert not target.exists()


def test_a_broken_servers_file_is_refused_whole(tmp_path: Path) -> None:
    target = tmp_path / "servers.yaml"
    target.write_text("servers:\n  broken:\n    transport: stdio\n")
    result = run_import(str(SEED), "--servers", str(target))
    assert result.returncode == 2
    assert "servers.broken.command: Field required" in result.stderr
    assert target.read_text() == "servers:\n  broken:\n    transport: stdio\n"


@pytest.mark.anyio
async def test_a_record_the_gateway_would_refuse_is_skipped_alone(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    records = {
        "weather.json": {"path": "/weather", "proxy_pass_url": "http://weather:8010/", "server_name": "Weather"},
        "legacy.json": {"path": "/legacy", "proxy_pass_url": "ftp://files.example/", "server_name": "Legacy"},
        "notes.json": {"path": "/notes/", "proxy_pass_url": "http://notes:8011/", "supported_transports": ["sse"]},
    }
    for name, record in records.items():
        (seed / name).write_text(json.dumps(record))
    target = servers_file(tmp_path, {"wx": {"transport": "sse", "url": "http://wx:1/sse", "prefix": "weather"}})

    report = await import_into(seed, target)

    outcomes = {outcome.source: outcome for outcome in report.outcomes}
    assert outcomes["legacy.json"].detail == "url: 'ftp://files.example/mcp' is not an http(s) URL"
    assert "both export under the prefix 'weather'" in outcomes["weather.json"].detail
    assert outcomes["notes.json"].action == "imported"
    assert list(load_servers(target).servers) == ["wx", "notes"]  # no state file: records count as enabled


@pytest.mark.anyio
async def test_a_running_gateway_serves_what_was_imported(tmp_path: Path, echo_url: str) -> None:
    seed = tmp_path / "seed"
    shutil.copytree(SEED, seed)
    async with serve_gateway(tmp_path / "gateway", servers={}, secured=False, servers_reload_interval=0.2) as live:
        record = {"server_name": "Echo", "path": "/echo/", "proxy_pass_url": echo_url.removesuffix("mcp")}
        (seed / "echo.json").write_text(json.dumps({**record, "supported_transports": ["streamable-http"]}))
        (seed / "server_state.json").write_text(json.dumps({"/echo/": True}))
        result = await run_command_in_thread("import", str(seed), "--servers", str(live.servers_file))
        assert result.returncode == 0, result.stderr
        await live.wait_until(connected("echo"))
        async with Client(live.url) as client:
            answer = await client.call_tool("echo__echo", {"text": "imported"})
    assert isinstance(answer.content[0], types.TextContent) and answer.content[0].text == "imported"
    assert load_servers(live.servers_file).servers["echo"].enabled
