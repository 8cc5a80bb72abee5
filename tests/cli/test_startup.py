"""Starting the gateway as a host or an operator does: the processes themselves are under test.

- `serve` prints READY only once every stdio upstream's first connection attempt has settled, so a
  client connecting at READY sees every tool; then one client config per host, each in that host's
  format, with an `Authorization: Bearer <token>` placeholder when auth is on (and each one works).
- `stdio` checks its caller's identity before it starts any upstream, and a refusal is one line
  (each case in-process through `main()`, one of them as the console script a host launches).
- The README's stdio recipe runs as printed.
- A host that starts the gateway in another folder with a minimal PATH (Claude Desktop does) gets
  every stdio upstream: `python` is the gateway's interpreter, relative paths come from the servers
  file's folder, and the one that cannot start is named in its error.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import SecretStr

from aggregator.cli.hosts import HOSTS
from aggregator.config.settings import AuthSettings, GatewayKeySettings
from tests.commands import Ran, run_command_in_thread
from tests.conftest import REPOSITORY, gateway_process
from tests.harness import ERAS, KID, SECRET, STARTUP_DEADLINE, Era, text_of, token_for, write_files
from tests.interop.node import NODE22, NODE_MODULES, requires
from tests.processes import RunningProcess, write_gateway_config

pytestmark = pytest.mark.anyio

CONSOLE_SCRIPT = Path(sys.executable).with_name("mcp-aggregator")
README_STDIO = "mcp-aggregator stdio --config configs/gateway.yaml --insecure-dev"
"""The README's stdio recipe for a laptop (`--insecure-dev`: configs/gateway.yaml verifies no token)."""
MINIMAL_PATH = "/usr/bin:/bin"
KEY_ENV = "STARTUP_TEST_KEY"
OTHER_KEY = AuthSettings(gateway_keys=(GatewayKeySettings(kid=KID, secret=SecretStr("another-secret-" * 3)),))
CALL_DEADLINE = 60.0
HELLO = """
import sys, time
from mcp.server.mcpserver import MCPServer

if "--slow" in sys.argv:
    time.sleep(2)  # a server that takes a while to start (an npx download, a model load)
server = MCPServer("hello")


@server.tool()
def hello(name: str) -> str:
    return f"hello {name}"


server.run("stdio")
"""
MODERN = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def write_hello(directory: Path) -> None:
    (directory / "servers").mkdir(parents=True, exist_ok=True)
    (directory / "servers" / "hello.py").write_text(HELLO)


@asynccontextmanager
async def stdio_gateway(
    argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None, era: Era = "legacy"
) -> AsyncIterator[Client]:
    """A host's side of `mcp-aggregator stdio`: launch it, connect over its stdin/stdout."""
    launch = StdioServerParameters(command=argv[0], args=argv[1:], cwd=cwd, env=env)
    with log.open("w") as errors, anyio.fail_after(CALL_DEADLINE):
        try:
            async with Client(stdio_client(launch, errlog=errors), mode=era) as client:
                yield client
        except Exception as error:
            raise AssertionError(f"{shlex.join(argv)} failed; its stderr:\n{log.read_text()}") from error  # noqa: ASYNC240


def services(result: Any) -> dict[str, dict[str, Any]]:
    assert not result.is_error, result
    return {service["name"]: service for service in json.loads(text_of(result))["services"]}


# --- stdio: identity first ------------------------------------------------------------------------

REFUSALS: dict[str, tuple[bool, str | None, str]] = {
    # name: (settings verify tokens, MCP_AGGREGATOR_TOKEN, what the one line says)
    "no verifier and no --insecure-dev": (False, None, "pass --insecure-dev"),
    "a token but no verifier": (False, "anything", "configures no token verifier"),
    "no token": (True, None, "set MCP_AGGREGATOR_TOKEN to a gateway token"),
    "a malformed token": (True, "not-a-jwt", "MCP_AGGREGATOR_TOKEN is not accepted: token is not a well-formed JWT"),
    "a token of another key": (True, "other-key", "MCP_AGGREGATOR_TOKEN is not accepted"),
    "an expired token": (True, "expired", "MCP_AGGREGATOR_TOKEN is not accepted"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_stdio_refuses_an_unidentified_caller_at_once_without_starting_upstreams(
    tmp_path: Path, case: str
) -> None:
    secured, token, said = REFUSALS[case]
    marker = tmp_path / "started"
    starts = {"transport": "stdio", "command": "python", "args": ["-c", f"open({str(marker)!r}, 'w')"]}
    write_files(tmp_path, {"marker": starts}, None)
    config = write_gateway_config(tmp_path, key_env=KEY_ENV if secured else None, connect_timeout=30)
    tokens = {"other-key": token_for("alice", auth=OTHER_KEY), "expired": expired_token()}
    env = {KEY_ENV: SECRET}
    if token is not None:
        env["MCP_AGGREGATOR_TOKEN"] = tokens.get(token, token)
    with anyio.fail_after(20):  # a stalled start would take connect_timeout (30 s)
        if case == "no token":  # once as a host runs it: the console script, its exit status and stderr
            process = await anyio.run_process(
                [str(CONSOLE_SCRIPT), "stdio", "--config", str(config)],
                cwd=tmp_path,
                env={key: value for key, value in os.environ.items() if key != "MCP_AGGREGATOR_TOKEN"} | env,
                check=False,
            )
            result = Ran(process.returncode, process.stdout.decode(), process.stderr.decode())
        else:
            result = await run_command_in_thread("stdio", "--config", str(config), environment=env)
    stderr = result.stderr
    assert result.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mcp-aggregator: "), stderr
    assert said in lines[0]
    assert "Traceback" not in stderr
    assert not marker.exists()  # no upstream was started
    if token not in (None, "anything"):
        assert tokens.get(token, token) not in stderr


def expired_token() -> str:
    """A token signed with the right key that expired an hour ago."""
    now = int(time.time())
    claims = {"iss": "mcp-aggregator", "aud": "mcp-aggregator", "sub": "alice", "jti": "old", "iat": now - 7200}
    return jwt.encode({**claims, "exp": now - 3600}, SECRET, algorithm="HS256", headers={"kid": KID})


# --- the README's stdio recipe, and a host's foreign cwd and PATH ----------------------------------


async def test_the_readme_stdio_recipe_runs_as_printed(tmp_path: Path) -> None:
    argv = shlex.split(README_STDIO)
    argv[0] = str(CONSOLE_SCRIPT)  # the console script the package installs
    env = {"MCP_AGGREGATOR_DATA_DIR": str(tmp_path / "data")}  # keep the repository's data/ untouched
    env["MCP_AGGREGATOR_MANAGEMENT_TOOLS_ON_MCP"] = "true"  # list_services over stdio, for this check only
    async with stdio_gateway(argv, REPOSITORY, tmp_path / "stdio.log", env) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        listed = services(await client.call_tool("list_services", {}))
    assert {"notes__add_note", "time__get_current_time"} <= names  # the two stdio upstreams
    assert listed["notes"]["state"] == "healthy" and listed["time"]["state"] == "healthy"


@pytest.mark.parametrize("era", ERAS)
async def test_a_host_with_another_cwd_and_a_minimal_path_gets_every_stdio_upstream(tmp_path: Path, era: Era) -> None:
    configs, elsewhere = tmp_path / "configs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_hello(configs)
    servers = {
        "notes": {"transport": "stdio", "command": "python", "args": ["-m", "examples.servers.notes"]},
        "hello": {"transport": "stdio", "command": "python3", "args": ["servers/hello.py"]},
        "time": {"transport": "stdio", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
        "broken": {"transport": "stdio", "command": "no-such-mcp-server", "args": ["--port", "1"]},
    }
    write_files(configs, servers, None)
    config = write_gateway_config(configs, connect_timeout=30, management_tools_on_mcp=True)  # list_services
    argv = [str(CONSOLE_SCRIPT), "stdio", "--config", str(config), "--insecure-dev"]
    async with stdio_gateway(argv, elsewhere, tmp_path / "stdio.log", {"PATH": MINIMAL_PATH}, era) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        hello = await client.call_tool("hello__hello", {"name": "desktop"})
        listed = services(await client.call_tool("list_services", {}))
    assert {"notes__add_note", "hello__hello", "time__get_current_time"} <= names
    assert text_of(hello) == "hello desktop"
    assert {name: listed[name]["state"] for name in servers} == {
        "notes": "healthy",
        "hello": "healthy",
        "time": "healthy",
        "broken": "unhealthy",
    }
    error = listed["broken"]["last_error"]
    assert error.startswith("Upstream 'broken': cannot start no-such-mcp-server --port 1: ")
    assert f"'no-such-mcp-server' is not on PATH ({MINIMAL_PATH})" in error
    assert "FileNotFoundError" not in (tmp_path / "stdio.log").read_text()


# --- serve: READY after the first attempts, then one config per host -------------------------------


async def test_ready_comes_once_every_stdio_upstream_has_answered(tmp_path: Path) -> None:
    write_hello(tmp_path)
    servers = {
        "slow": {"transport": "stdio", "command": "python", "args": ["servers/hello.py", "--slow"]},
        "notes": {"transport": "stdio", "command": "python", "args": ["-m", "examples.servers.notes"]},
        "time": {"transport": "stdio", "command": "mcp-server-time"},
    }
    async with gateway_process(write_files(tmp_path, servers, None)) as (url, _):
        async with Client(url) as client:  # at READY, as a host does
            names = {tool.name for tool in (await client.list_tools()).tools}
        async with httpx2.AsyncClient(trust_env=False) as http:
            ready = await http.get(url.removesuffix("/mcp") + "/readyz")
    assert {"slow__hello", "notes__add_note", "time__get_current_time"} <= names
    assert ready.status_code == 200


async def printed_configs(gateway: RunningProcess) -> dict[str, str]:
    """The blocks printed after READY, by host: each one follows its `# Host: where` line."""
    last = await gateway.wait_for(re.compile(rf"^# {HOSTS[-1]}: "), STARTUP_DEADLINE)
    await gateway.wait_for(re.compile(r"^}$"), STARTUP_DEADLINE, gateway.lines.index(last))  # its block's end
    output = gateway.output
    after_ready = output[output.index("READY ") :]
    blocks = re.split(r"^# ([^:\n]+): .*$\n", after_ready, flags=re.MULTILINE)
    found: dict[str, str] = {}
    for host, text in zip(blocks[1::2], blocks[2::2], strict=True):
        if text.startswith("{"):
            _, end = json.JSONDecoder().raw_decode(text)
            found[host] = text[:end]
        else:
            found[host] = text.splitlines()[0]
    return found


@pytest.mark.parametrize("secured", [False, True], ids=["insecure-dev", "secured"])
async def test_serve_prints_one_working_config_per_host(tmp_path: Path, secured: bool) -> None:
    servers_file = write_files(tmp_path, {}, None)
    extra = ["--config", str(write_gateway_config(tmp_path, key_env=KEY_ENV))] if secured else []
    token = token_for("alice")
    async with gateway_process(servers_file, *extra, env={KEY_ENV: SECRET}, insecure_dev=not secured) as (url, gateway):
        configs = await printed_configs(gateway)
        assert list(configs) == list(HOSTS)
        bearer = {"Authorization": "Bearer <token>"}
        claude_code = shlex.split(configs["Claude Code"])
        assert claude_code == ["claude", "mcp", "add", "--transport", "http", "aggregator", url] + (
            ["--header", "Authorization: Bearer <token>"] if secured else []
        )
        desktop = json.loads(configs["Claude Desktop"])["mcpServers"]["aggregator"]
        assert desktop["command"] == "npx" and desktop["args"][:3] == ["-y", "mcp-remote", url]
        assert desktop["args"][3:] == (["--header", "Authorization:${AUTH_HEADER}"] if secured else [])
        assert desktop.get("env") == ({"AUTH_HEADER": "Bearer <token>"} if secured else None)
        cursor = json.loads(configs["Cursor"])
        assert cursor == {"mcpServers": {"aggregator": {"url": url, **({"headers": bearer} if secured else {})}}}
        vscode = json.loads(configs["VS Code"])
        assert vscode == {
            "servers": {"aggregator": {"type": "http", "url": url, **({"headers": bearer} if secured else {})}}
        }
        # Each header, with a real token in place of the placeholder, is one the gateway accepts.
        header = claude_code[-1].split(": ", 1) if secured else None
        for headers in (
            dict([header]) if header else {},
            cursor["mcpServers"]["aggregator"].get("headers", {}),
            vscode["servers"]["aggregator"].get("headers", {}),
        ):
            assert await lists_tools(url, {name: value.replace("<token>", token) for name, value in headers.items()})
        if secured:
            assert not await lists_tools(url, {})  # and without it the gateway refuses


async def lists_tools(url: str, headers: dict[str, str]) -> bool:
    """Whether a stateless 2026-07-28 tools/list with `headers` is answered."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": MODERN}}
    protocol = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.post(url, json=body, headers={**protocol, "mcp-method": "tools/list", **headers})
    return response.status_code == 200


@requires("mcp-remote")
async def test_the_printed_claude_desktop_config_reaches_a_secured_gateway(tmp_path: Path) -> None:
    notes = {"transport": "stdio", "command": "python", "args": ["-m", "examples.servers.notes"]}
    servers_file = write_files(
        tmp_path, {"notes": notes}, "everything:\n- server: '*'\n  methods: ['*']\n  tools: ['*']\n"
    )
    config = write_gateway_config(tmp_path, key_env=KEY_ENV)
    async with gateway_process(servers_file, "--config", str(config), env={KEY_ENV: SECRET}, insecure_dev=False) as (
        _,
        gateway,
    ):
        desktop = json.loads((await printed_configs(gateway))["Claude Desktop"])["mcpServers"]["aggregator"]
        after_npx = desktop["args"].index("mcp-remote") + 1  # `npx -y mcp-remote` is the local install here
        env = {
            name: value.replace("<token>", token_for("alice", scopes=["everything"]))
            for name, value in desktop["env"].items()
        }
        launch = StdioServerParameters(
            command=str(NODE22),
            args=[str(NODE_MODULES / ".bin" / "mcp-remote"), *desktop["args"][after_npx:]],
            env={**env, "HOME": str(tmp_path)},
        )
        with (tmp_path / "mcp-remote.log").open("w") as errors, anyio.fail_after(CALL_DEADLINE):
            async with Client(stdio_client(launch, errlog=errors), mode="legacy") as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
    assert "notes__add_note" in names
