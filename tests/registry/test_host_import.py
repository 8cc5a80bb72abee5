"""`mcp-aggregator import --from HOST FILE`: a host's MCP servers moved into servers.yaml in one command.

Each host's own file format (Claude Desktop, Claude Code, Cursor, VS Code with comments, fastmcp)
is imported by the real CLI and then served by a real gateway; credentials become `${VAR}`
references whose values never reach servers.yaml or the report.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.errors import ConfigError
from aggregator.registry.host_import import plan, write_env_file
from aggregator.registry.hosts import Secret, convert, read_host_file, server_name
from tests.commands import run_command_in_thread
from tests.harness import ERAS, serve_gateway, serve_mcp, text_of, tool_names
from tests.servers.headers import create_server as headers_server

GITHUB_TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"
LIVE_KEY = "sk-live-0123456789abcdefghijklmnop"

HOST_FILES: dict[str, tuple[str, str]] = {
    "claude-desktop": (
        "claude_desktop_config.json",
        """{
  "mcpServers": {
    "Clock (UTC)": {
      "command": "mcp-server-time",
      "args": ["--local-timezone", "UTC"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "GITHUB_TOKEN", "LOG_LEVEL": "info"}
    }
  },
  "globalShortcut": ""
}""",
    ),
    "claude-code": (
        ".mcp.json",
        """{"mcpServers": {
  "weather": {"type": "http", "url": "WEATHER_URL", "headers": {"X-Region": "${REGION:-eu}"}},
  "echo": {"type": "sse", "url": "ECHO_SSE_URL"}
}}""",
    ),
    "cursor": (
        "mcp.json",
        """{"mcpServers": {
  "keys": {"url": "HEADERS_URL", "headers": {"Authorization": "Bearer LIVE_KEY", "X-Team": "blue"}},
  "clock": {"command": "mcp-server-time", "env": {"TIME_API_KEY": "${env:CURSOR_TIME_KEY}"}}
}}""",
    ),
    "vscode": (
        ".vscode/mcp.json",
        """{
  // This workspace's servers (VS Code writes JSON with comments).
  "inputs": [{"type": "promptString", "id": "echo-key", "description": "Echo key", "password": true}],
  "servers": {
    "Echo Server": {"type": "sse", "url": "ECHO_SSE_URL", "headers": {"X-API-Key": "${input:echo-key}"},},
    "weather": {"type": "http", "url": "WEATHER_URL"}, /* a trailing comma follows */
  },
}""",
    ),
    "fastmcp": (
        "fastmcp.json",
        """{"mcpServers": {
  "weather": {"url": "WEATHER_URL", "transport": "streamable-http"},
  "echo": {"url": "ECHO_SSE_URL", "transport": "sse"},
  "clock": {"command": "mcp-server-time", "args": [], "transport": "stdio"}
}}""",
    ),
}
SERVED: dict[str, tuple[set[str], dict[str, str], str, str]] = {
    # host: (servers, environment the operator sets, a tool to call, what its answer contains)
    "claude-desktop": (
        {"clock-utc"},
        {"GITHUB_PERSONAL_ACCESS_TOKEN": GITHUB_TOKEN},
        "clock-utc__get_current_time",
        "UTC",
    ),
    "claude-code": ({"weather", "echo"}, {"REGION": "eu"}, "echo__echo", "moved over"),
    "cursor": (
        {"keys", "clock"},
        {"KEYS_TOKEN": LIVE_KEY, "CURSOR_TIME_KEY": "t"},
        "keys__whoami",
        f"Bearer {LIVE_KEY}",
    ),
    "vscode": ({"echo-server", "weather"}, {"ECHO_KEY": "k"}, "echo-server__echo", "moved over"),
    "fastmcp": ({"weather", "echo", "clock"}, {}, "weather__get_forecast", "Lisbon"),
}
ARGUMENTS: dict[str, dict[str, Any]] = {
    "echo": {"text": "moved over"},
    "get_forecast": {"city": "Lisbon", "days": 1},
    "get_current_time": {"timezone": "UTC"},
}


def host_file(directory: Path, host: str, urls: dict[str, str]) -> Path:
    name, text = HOST_FILES[host]
    for placeholder, value in {**urls, "GITHUB_TOKEN": GITHUB_TOKEN, "LIVE_KEY": LIVE_KEY}.items():
        text = text.replace(f'"{placeholder}"', json.dumps(value)).replace(placeholder, value)
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def run_import(*args: str) -> tuple[int, str, str]:
    """The real CLI's `import` command, run in-process."""
    done = await run_command_in_thread("import", *args)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("host", list(HOST_FILES))
async def test_one_import_and_a_gateway_serves_the_hosts_servers(
    host: str, tmp_path: Path, weather_url: str, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_mcp(headers_server()) as headers_url:
        urls = {
            "WEATHER_URL": weather_url,
            "ECHO_SSE_URL": echo_url.removesuffix("/mcp") + "/sse",
            "HEADERS_URL": headers_url,
        }
        source = host_file(tmp_path / "host", host, urls)
        servers_file = tmp_path / "servers.yaml"
        code, out, err = await run_import("--from", host, str(source), "--servers", str(servers_file))
        assert code == 0, err
        names, environment, tool, expected = SERVED[host]
        assert f"{servers_file}: imported {len(names)}, skipped 0" in out
        written = servers_file.read_text()
        assert GITHUB_TOKEN not in written + out + err and LIVE_KEY not in written + out + err
        for variable in environment:
            assert f"  {variable}" in out, out  # the report names every variable to set
            monkeypatch.setenv(variable, environment[variable])
        servers = yaml.safe_load(written)["servers"]
        assert set(servers) == names
        async with serve_gateway(tmp_path / "gateway", servers=servers, secured=False) as live:
            for era in ERAS:
                async with live.client("host-user", era=era) as client:
                    listed = await tool_names(client)
                    assert {name.split("__")[0] for name in listed} >= names, listed
                    result = await client.call_tool(tool, ARGUMENTS.get(tool.split("__")[1], {}))
                    assert not result.is_error, result.content
                    assert expected in text_of(result) + json.dumps(result.structured_content), result


def converted(host: str, servers: dict[str, Any], existing: dict[str, Any] | None = None, **options: Any) -> Any:
    path = Path("/work/project/.vscode/mcp.json")
    raw = dict(existing or {})
    options.setdefault("replace", False)
    options.setdefault("reserved", frozenset({"mcpgw"}))
    return plan(convert(servers, host, path), raw, source=Path("servers.yaml"), **options), raw


@pytest.mark.parametrize(
    ("spec", "value", "reference"),
    [
        ({"command": "srv", "env": {"OPENAI_API_KEY": "plain-looking"}}, "plain-looking", "${OPENAI_API_KEY}"),
        ({"command": "srv", "env": {"DB_PASSWORD": "hunter2"}}, "hunter2", "${DB_PASSWORD}"),
        ({"command": "srv", "env": {"SETTING": GITHUB_TOKEN}}, GITHUB_TOKEN, "${SETTING}"),
        ({"command": "srv", "args": ["--api-key", "abc123"]}, "abc123", "${S_API_KEY}"),
        ({"command": "srv", "args": ["--token=abc123"]}, "abc123", "--token=${S_TOKEN}"),
        ({"command": "srv", "args": [LIVE_KEY]}, LIVE_KEY, "${S_ARG0}"),
        ({"url": "https://x.example/mcp", "headers": {"Authorization": "Bearer abc"}}, "abc", "Bearer ${S_TOKEN}"),
        ({"url": "https://x.example/mcp", "headers": {"X-API-Key": "abc"}}, "abc", "${S_X_API_KEY}"),
        ({"url": "https://x.example/mcp", "headers": {"Cookie": "session=abc"}}, "session=abc", "${S_COOKIE}"),
        ({"url": "https://x.example/mcp?api_key=abc&region=eu"}, "abc", "api_key=${S_API_KEY}&region=eu"),
    ],
)
def test_credentials_become_references_and_their_values_stay_out(
    spec: dict[str, Any], value: str, reference: str
) -> None:
    result, raw = converted("cursor", {"s": spec})
    assert value not in yaml.safe_dump(raw)
    assert reference in json.dumps(raw["s"]), raw
    assert [secret.value for secret in result.secrets] == [value]
    assert result.report.outcomes[0].action == "imported"


@pytest.mark.parametrize(
    ("spec", "kept"),
    [
        ({"command": "srv", "env": {"LOG_LEVEL": "debug", "ROOT": "/home/me/notes"}}, {"LOG_LEVEL": "debug"}),
        ({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}, {}),
        ({"url": "https://x.example/mcp", "headers": {"X-Team": "blue"}}, {}),
    ],
)
def test_plain_settings_are_kept_as_they_are(spec: dict[str, Any], kept: dict[str, str]) -> None:
    result, raw = converted("cursor", {"s": spec})
    assert result.secrets == () and result.variables == ()
    for key, value in kept.items():
        assert raw["s"]["env"][key] == value
    assert raw["s"].get("args", []) == spec.get("args", [])


@pytest.mark.parametrize(
    ("host", "value", "becomes", "note"),
    [
        ("vscode", "${env:HOME_API}", "${HOME_API}", None),
        ("cursor", "${env:HOME_API}", "${HOME_API}", None),
        ("vscode", "${input:api-key}", "${API_KEY}", "VS Code asked for input 'api-key': set API_KEY"),
        ("claude-code", "${TEAM_KEY}", "${TEAM_KEY}", None),
        ("claude-code", "${TEAM_KEY:-none}", "${TEAM_KEY}", "the default of ${TEAM_KEY:-none} is dropped"),
        ("vscode", "${workspaceFolder}/data", "/work/project/data", None),
    ],
)
def test_host_variables_become_the_gateways(host: str, value: str, becomes: str, note: str | None) -> None:
    result, raw = converted(host, {"s": {"command": "srv", "args": [value]}})
    assert raw["s"]["args"] == [becomes]
    notes = " ".join(result.report.outcomes[0].notes)
    assert note is None or note in notes, notes


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("GitHub (work)", "github-work"),
        ("my_server", "my-server"),
        ("a--b", "a-b"),
        ("Brave Search!", "brave-search"),
        ("x" * 40, "x" * 32),
        ("-edge-", "edge"),
        ("ÄÖÜ", None),
    ],
)
def test_names_are_normalised_and_every_rename_is_reported(given: str, name: str | None) -> None:
    assert server_name(given) == name
    result, raw = converted("claude-desktop", {given: {"command": "srv"}})
    outcome = result.report.outcomes[0]
    if name is None:
        assert outcome.action == "skipped" and "no letter or digit" in outcome.detail
    else:
        assert list(raw) == [name]
        assert (f"renamed from '{given}'" in " ".join(outcome.notes)) == (given != name)


@pytest.mark.parametrize(
    ("servers", "existing", "reason"),
    [
        ({"s": {"args": ["x"]}}, {}, "neither a `command` nor a `url`"),
        ({"s": {"type": "websocket", "url": "wss://x"}}, {}, "transport 'websocket' is not one of"),
        ({"s": {"type": "http"}}, {}, "a streamable-http server without a `url`"),
        ({"s": {"url": "ftp://x.example/mcp"}}, {}, "url: 'ftp://x.example/mcp' is not an http(s) URL"),
        ({"s": {"command": "srv", "env": ["A=1"]}}, {}, "`env` is not an object"),
        ({"s": {"command": "srv", "args": ["${command:pick}"]}}, {}, "only VS Code can fill in"),
        (
            {"s": {"command": "srv"}},
            {"s": {"transport": "stdio", "command": "old"}},
            "already registered (use --replace",
        ),
        ({"mcpgw": {"command": "srv"}}, {}, "'mcpgw' is the gateway's own server name"),
        ({"A": {"command": "srv"}, "a": {"command": "srv"}}, {}, "'a' was already imported from 'A'"),
        ({"s": "npx server"}, {}, "not an object"),
    ],
)
def test_an_entry_that_cannot_be_imported_is_skipped_with_its_reason(
    servers: dict[str, Any], existing: dict[str, Any], reason: str
) -> None:
    result, raw = converted("vscode", servers, existing)
    skipped = [outcome for outcome in result.report.outcomes if outcome.action == "skipped"]
    assert len(skipped) == 1 and reason in skipped[0].detail, result.report.outcomes
    assert skipped[0].name is None or skipped[0].name not in raw or skipped[0].name in existing or len(servers) > 1


def test_replace_overwrites_an_existing_entry() -> None:
    result, raw = converted(
        "claude-desktop", {"s": {"command": "new"}}, {"s": {"transport": "stdio", "command": "old"}}, replace=True
    )
    assert result.report.outcomes[0].action == "replaced" and raw["s"]["command"] == "new"


def test_one_variable_never_holds_two_values() -> None:
    servers = {
        "a": {"command": "srv", "env": {"API_KEY": "first-secret"}},
        "b": {"command": "srv", "env": {"API_KEY": "second-secret"}},
        "c": {"command": "srv", "env": {"API_KEY": "first-secret"}},
    }
    result, raw = converted("claude-desktop", servers)
    assert [raw[name]["env"]["API_KEY"] for name in "abc"] == ["${API_KEY}", "${B_API_KEY}", "${API_KEY}"]
    assert {(secret.variable, secret.value) for secret in result.secrets} == {
        ("API_KEY", "first-secret"),
        ("B_API_KEY", "second-secret"),
    }


FOREIGN_FILES = {
    # host: (its file as given, what the refusal says)
    "claude-desktop": (
        '{"servers": {}}',
        "no `mcpServers` object, where Claude Desktop keeps its servers; it looks like --from vscode",
    ),
    "vscode": ('{"mcpServers": {}}', "no `servers` or `mcp.servers` object, where VS Code keeps its servers"),
    "cursor": ('{"mcpServers": ', "cannot be read as JSON"),
}


@pytest.mark.parametrize("host", FOREIGN_FILES)
def test_a_file_in_another_format_is_refused_with_what_was_expected(host: str, tmp_path: Path) -> None:
    text, message = FOREIGN_FILES[host]
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_host_file(path, host)
    assert message in str(refused.value)


def test_vscode_settings_json_with_comments_is_read(tmp_path: Path) -> None:
    text = (
        '{\n  "editor.fontSize": 14, // mine\n  "mcp": {"servers": {"a // b,}": {"url": "https://x.example/mcp",}}},\n}'
    )
    path = tmp_path / "settings.json"
    path.write_text(text)
    assert list(read_host_file(path, "vscode")) == ["a // b,}"]


@pytest.mark.anyio
async def test_dry_run_writes_nothing_and_the_env_file_is_private(tmp_path: Path) -> None:
    source = host_file(tmp_path, "claude-desktop", {})
    servers_file = tmp_path / "servers.yaml"
    servers_file.write_text("# the operator's file\nservers: {}\n")
    env_file = tmp_path / "gateway.env"
    env_file.write_text("KEEP_ME=1\nGITHUB_PERSONAL_ACCESS_TOKEN=stale\n")
    code, out, _ = await run_import(
        "--from", "claude-desktop", str(source), "--servers", str(servers_file), "--dry-run"
    )
    assert code == 0 and f"{servers_file}: would import 1, skipped 0" in out
    assert servers_file.read_text() == "# the operator's file\nservers: {}\n"
    code, out, _ = await run_import(
        "--from", "claude-desktop", str(source), "--servers", str(servers_file), "--env-file", str(env_file)
    )
    assert code == 0, out
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text() == f"KEEP_ME=1\nGITHUB_PERSONAL_ACCESS_TOKEN={GITHUB_TOKEN}\n"
    assert f"{env_file}: 1 values written (mode 0600)" in out
    code, _, err = await run_import("--from", "vscode", str(source), "--servers", str(servers_file))
    assert code == 2 and "no `servers` or `mcp.servers` object" in err and "--from claude-desktop" in err


def test_env_file_values_are_quoted_for_a_shell(tmp_path: Path) -> None:
    path = tmp_path / "gateway.env"
    write_env_file(path, (Secret("A", "two words; $(rm -rf /)", "x"),))
    assert path.read_text() == "A='two words; $(rm -rf /)'\n"
