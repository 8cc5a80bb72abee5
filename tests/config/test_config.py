"""Configuration files: what loads, and how every problem is reported (file, path, line, reason)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aggregator.config.settings import load_settings
from aggregator.errors import ConfigError
from aggregator.registry.models import SseUpstream, StdioUpstream, StreamableHttpUpstream, load_servers
from tests.commands import run_command
from tests.conftest import REPOSITORY
from tests.harness import write_files


def write(tmp_path: Path, text: str, name: str = "servers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_demo_configuration_is_valid() -> None:
    settings = load_settings(REPOSITORY / "configs" / "gateway.yaml")
    servers = load_servers(settings.servers_file)
    assert settings.servers_file == REPOSITORY / "configs" / "servers.yaml"
    assert {name: spec.transport for name, spec in servers.servers.items()} == {
        "weather": "streamable-http",
        "notes": "stdio",
        "time": "stdio",
    }


def test_the_secure_example_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_AGGREGATOR_KEY_2026", "x" * 64)
    monkeypatch.chdir(REPOSITORY)
    result = run_command("check-config", "--config", "configs/gateway.secure.yaml")
    assert result.returncode == 0, result.stderr
    assert "configs/scopes.yml: OK, 2 groups, 2 scopes, 5 rules" in result.stdout
    assert "auth: 3 token verifiers" in result.stdout


def test_a_gateway_key_from_a_missing_variable_is_named(tmp_path: Path) -> None:
    config = write(tmp_path, "auth:\n  gateway_keys:\n  - {kid: k1, secret_env: NOT_SET_ANYWHERE}\n", "gateway.yaml")
    with pytest.raises(ConfigError, match="environment variable 'NOT_SET_ANYWHERE' \\(key 'k1'\\) is not set"):
        load_settings(config)


def test_each_transport_has_its_own_fields_and_shared_defaults(tmp_path: Path) -> None:
    http = {"url": "https://mcp.example.com/mcp", "headers": {"X-Team": "platform"}, "prefix": "r", "timeout": 5}
    path = write_files(
        tmp_path,
        {
            "local": {"transport": "stdio", "command": "python", "args": ["-m", "x"], "env": {"A": "1"}},
            "remote": {"transport": "streamable-http", **http},
            "old": {"transport": "sse", "url": "http://127.0.0.1:9000/sse", "enabled": False, "tags": ["legacy"]},
        },
        None,
    )
    servers = load_servers(path).servers
    local, remote, old = servers["local"], servers["remote"], servers["old"]
    assert isinstance(local, StdioUpstream) and local.args == ("-m", "x") and local.env == {"A": "1"}
    assert isinstance(remote, StreamableHttpUpstream) and remote.prefix == "r" and remote.timeout == 5
    assert isinstance(old, SseUpstream) and not old.enabled and old.tags == ("legacy",)
    assert local.enabled and local.timeout == 30 and local.prefix is None


def test_every_problem_is_reported_at_once_with_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        servers:
          Bad_Name:
            transport: stdio
            command: x
          ftp:
            transport: streamable-http
            url: ftp://example.com
          nocommand:
            transport: stdio
          weird:
            transport: carrier-pigeon
          typo:
            transport: sse
            url: http://127.0.0.1/sse
            timout: 3
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_servers(path)
    issues = {issue.path: issue for issue in caught.value.issues}
    assert set(issues) >= {"servers.Bad_Name", "servers.ftp.url", "servers.nocommand.command", "servers.typo.timout"}
    assert any(p.startswith("servers.weird") for p in issues)
    assert "is not an http(s) URL" in issues["servers.ftp.url"].reason
    assert issues["servers.ftp.url"].line == 8
    assert issues["servers.typo.timout"].line == 16
    assert all(issue.file == str(path) for issue in caught.value.issues)
    assert str(path) in str(caught.value)


def test_two_servers_exporting_under_one_prefix_is_an_error_naming_both(tmp_path: Path) -> None:
    servers = {
        "weather": {"transport": "stdio", "command": "a"},
        "forecast": {"transport": "stdio", "command": "b", "prefix": "weather"},
        "plain-a": {"transport": "stdio", "command": "c", "prefix": ""},
        "plain-b": {"transport": "stdio", "command": "d", "prefix": ""},
    }
    path = write_files(tmp_path, servers, None)
    with pytest.raises(ConfigError, match="servers 'weather' and 'forecast' both export under the prefix 'weather'"):
        load_servers(path)


def test_secrets_come_from_the_environment_and_a_missing_one_is_named(tmp_path: Path) -> None:
    remote = {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"}}
    path = write_files(tmp_path, {"remote": {"transport": "streamable-http", **remote}}, None)
    spec = load_servers(path, environ={"REMOTE_TOKEN": "s3cr3t"}).servers["remote"]
    assert isinstance(spec, StreamableHttpUpstream)
    assert spec.headers == {"Authorization": "Bearer s3cr3t"}
    with pytest.raises(ConfigError) as caught:
        load_servers(path, environ={})
    (issue,) = caught.value.issues
    assert issue.path == "servers.remote.headers.Authorization"
    assert "environment variable 'REMOTE_TOKEN' is not set" in issue.reason


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "servers:\n  a:\n    transport: stdio\n   command: [unclosed\n")
    with pytest.raises(ConfigError, match=r"servers\.yaml:4: <root>: invalid YAML"):
        load_servers(path)


def test_settings_come_from_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "port: 9001\nlog_level: debug\nservers_file: conf/servers.yaml\n", "gateway.yaml")
    assert load_settings(config).servers_file == tmp_path / "conf" / "servers.yaml"
    assert load_settings(config).port == 9001
    monkeypatch.setenv("MCP_AGGREGATOR_PORT", "9002")
    assert load_settings(config).port == 9002
    assert load_settings(config, port=9003).port == 9003
    monkeypatch.delenv("MCP_AGGREGATOR_PORT")
    bad = write(tmp_path, "port: seventy\nunknown_key: 1\n", "bad.yaml")
    with pytest.raises(ConfigError) as caught:
        load_settings(bad)
    assert {issue.path for issue in caught.value.issues} == {"port", "unknown_key"}


def test_check_config_reports_ok_or_every_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPOSITORY)
    good = run_command("check-config", "--config", "configs/gateway.yaml")
    assert good.returncode == 0, good.stderr
    assert "OK, 3 servers (3 enabled)" in good.stdout

    bad = write(tmp_path, "servers:\n  x:\n    transport: stdio\n  y:\n    transport: sse\n    url: nope\n")
    result = run_command("check-config", str(bad))
    assert result.returncode == 2
    assert "2 configuration problems" in result.stderr
    assert f"{bad}:2: servers.x.command: Field required" in result.stderr
    assert f"{bad}:6: servers.y.url: 'nope' is not an http(s) URL" in result.stderr


def test_serve_refuses_to_start_with_a_bad_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "servers:\n  x:\n    transport: stdio\n")
    result = run_command("serve", "--servers", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "servers.x.command: Field required" in result.stderr
    assert "READY" not in result.stderr


def test_check_config_connect_reports_names_over_the_host_budget(tmp_path: Path) -> None:
    clock = {"transport": "stdio", "command": "mcp-server-time"}
    named = {"time-zones-and-clocks-for-agents": clock, "short": {**clock, "prefix": "t"}}
    servers = write_files(tmp_path, named, None)
    data = {"MCP_AGGREGATOR_DATA_DIR": str(tmp_path / "data")}  # connecting pins the first listing: not in data/
    result = run_command("check-config", str(servers), "--connect", environment=data)
    assert result.returncode == 1, result.stderr
    assert "tools: 4 exported; 1 over the 64-character host budget" in result.stdout
    assert "mcp__aggregator__time-zones-and-clocks-for-agents__get_current_time (67 chars)" in result.stdout
    assert "t__convert_time" not in result.stdout
