"""A secured gateway with real demo upstreams for the console tests, and helpers to drive the console."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.policy.vending import mint_token
from tests.conftest import gateway_process, http_upstream, wait_connected
from tests.processes import RunningProcess
from tui.app import OperatorApp
from tui.link import Backoff
from tui.target import HttpTarget, admin_url

SECRET = "c" * 40
AUTH = AuthSettings(gateway_keys=(GatewayKeySettings(kid="k", secret=SecretStr(SECRET)),))
SCOPES = """
group_mappings:
  admins: [mcp-registry-admin, everything]
  operators: [weather-operator, everything]
UI-Scopes:
  mcp-registry-admin:
    list_service: [all]
    register_service: [all]
    toggle_service: [all]
    modify_service: [all]
    health_check_service: [all]
  weather-operator:
    list_service: [weather]
    toggle_service: [weather]
everything:
- server: "*"
  methods: [tools/list, tools/call, resources/list, resources/read, prompts/list, prompts/get]
  tools: ["*"]
"""
POLL_INTERVAL = 1.0
"""Changes made through the console poll at once; this only bounds how long outside changes take to show."""
DEADLINE = 20.0


@dataclass(frozen=True)
class ConsoleGateway:
    url: str
    process: RunningProcess
    servers_file: Path
    echo_url: str


@pytest.fixture(scope="package")
async def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleGateway]:
    """weather and echo (real HTTP upstreams) behind a gateway that verifies tokens against scopes.yml."""
    directory = tmp_path_factory.mktemp("console")
    async with http_upstream("weather") as (weather_url, _), http_upstream("echo") as (echo_url, _):
        servers = {
            "weather": {"transport": "streamable-http", "url": weather_url, "description": "Forecasts."},
            "echo": {"transport": "streamable-http", "url": echo_url},
        }
        (directory / "servers.yaml").write_text(yaml.safe_dump({"servers": servers}))
        (directory / "scopes.yml").write_text(SCOPES)
        config = {
            "servers_file": "servers.yaml",
            "scopes_file": "scopes.yml",
            "data_dir": "data",
            "servers_reload_interval": 0.2,
            "rate_limit_per_second": 0,
            "admin_allowed_networks": ["127.0.0.0/8"],  # registrations reach the loopback echo upstream
            "auth": {"gateway_keys": [{"kid": "k", "secret_env": "CONSOLE_TEST_KEY"}]},
        }
        (directory / "gateway.yaml").write_text(json.dumps(config))
        async with gateway_process(
            directory / "servers.yaml",
            "--config",
            str(directory / "gateway.yaml"),
            env={"CONSOLE_TEST_KEY": SECRET},
            insecure_dev=False,
        ) as (url, process):
            await wait_connected(process, "weather")
            await wait_connected(process, "echo")
            yield ConsoleGateway(url, process, directory / "servers.yaml", echo_url)


def token(group: str) -> str:
    """A gateway token for a member of `group` (subject `<group>-user`)."""
    return mint_token(AUTH, f"{group}-user", [], 600, groups=[group])[0]


def console(url: str, group: str = "admins", interval: float = POLL_INTERVAL) -> OperatorApp:
    """The console as a member of `group` would start it, polling often so tests need not wait long."""
    return OperatorApp(HttpTarget(admin_url(url), token(group)), interval=interval, backoff=Backoff(0.1, 0.3))


@asynccontextmanager
async def bystander(url: str, group: str = "admins") -> AsyncIterator[Client]:
    """A separate MCP client of the gateway's management endpoint, to check what the console did (or to act
    beside it)."""
    headers = {"Authorization": f"Bearer {token(group)}"}
    async with (
        httpx2.AsyncClient(headers=headers, trust_env=False) as http,
        Client(streamable_http_client(admin_url(url), http_client=http), cache=None) as client,
    ):
        yield client


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `deadline` seconds."""
    with anyio.move_on_after(deadline):
        while not condition():
            await pilot.pause(0.05)
        return
    raise AssertionError(f"gave up after {deadline} s waiting for {what}")


class Notes:
    """Every notification the app shows (pass as `run_test(message_hook=...)`)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.seen.append(f"{message.notification.title}: {message.notification.message}")

    def has(self, text: str) -> bool:
        return any(text in note for note in self.seen)
