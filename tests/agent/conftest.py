"""One stack for the agent tests: a real OIDC provider (users who sign in, a CLI client, an agent
client), the demo weather upstream, and a gateway (in-process) that accepts that provider's tokens."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.agent.browser import Visit, sign_in
from tests.conftest import REPOSITORY, STARTUP_DEADLINE
from tests.harness import LiveGateway, serve_gateway
from tests.policy.oidc import PROVIDER_SCRIPT, TOOLS, OidcProvider, rsa_jwk
from tests.policy.oidc import Client as OidcClient
from tests.processes import run_process, write_gateway_config

AUDIENCE = "urn:mcp-aggregator:agent-tests"
CLI_CLIENT = "mcp-aggregator-cli"
AGENT = OidcClient("weather-agent", "agent-" + "s" * 32, scopes=("mcp",), groups=("agents",))
USER, PASSWORD = "alice", "correct horse battery staple"
PROCESS_DEADLINE = 30.0
SIGN_IN_URL = re.compile(r"^\s+(http://127\.0\.0\.1:\d+/auth\?\S+)$")
SCOPES = """
group_mappings:
  agents: [agent/weather]
  weather-users: [agent/weather]
agent/weather:
- server: weather
  methods: [tools/list, tools/call]
  tools: ["*"]
- server: mcpgw
  methods: [tools/list, tools/call]
  tools: [intelligent_tool_finder]
"""


@dataclass(frozen=True)
class Stack:
    provider: OidcProvider
    gateway: LiveGateway
    weather_url: str
    config: Path
    """A gateway.yaml for the same gateway, for commands that start one of their own (`serve:stdio`)."""

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def data_dir(self) -> Path:
        return self.gateway.gateway.settings.data_dir


PROVIDER_CONFIG: dict[str, Any] = {
    "resources": [{"audience": AUDIENCE, "alg": "RS256", "ttl": 300}],
    "clients": [
        AGENT.to_config(),
        {"client_id": CLI_CLIENT, "redirect_uris": ["http://127.0.0.1/callback"], "scope": "mcp"},
    ],
    "users": [{"username": USER, "password": PASSWORD, "groups": ["weather-users"]}],
}


@pytest.fixture(scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("agent-stack")
    async with identity_provider(directory, {**PROVIDER_CONFIG, "keys": [rsa_jwk("agent-r1")]}) as provider:
        auth: dict[str, Any] = {
            "oidc_issuers": [{"issuer": provider.issuer, "audiences": [AUDIENCE]}],
            "authorization_servers": [provider.issuer],
        }
        servers = {"weather": {"transport": "streamable-http", "url": weather_url}}
        async with serve_gateway(directory, servers=servers, scopes=SCOPES, auth=auth) as live:
            yield Stack(provider, live, weather_url, write_gateway_config(directory, auth=auth))


@asynccontextmanager
async def identity_provider(directory: Path, config: dict[str, Any]) -> AsyncIterator[OidcProvider]:
    """`tools/oidc/provider.mjs` with `config` (which may have sign-in users and native clients)."""
    config_path = directory / "oidc-provider.json"
    config_path.write_text(json.dumps(config))
    argv = [str(TOOLS / "node22"), str(PROVIDER_SCRIPT), "--config", str(config_path), "--port", "0"]
    async with (
        run_process(argv, cwd=REPOSITORY) as process,
        httpx2.AsyncClient(timeout=10.0, trust_env=False) as http,
    ):
        issuer = (await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)).split()[1]
        response = await http.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        yield OidcProvider(process, http, response.json(), config_path)


@dataclass(frozen=True)
class Finished:
    status: int
    stdout: str
    stderr: str


async def run_command(argv: Sequence[str], env: dict[str, str] | None = None) -> Finished:
    """Run a command to completion (killed after PROCESS_DEADLINE seconds)."""
    with anyio.fail_after(PROCESS_DEADLINE):
        done = await anyio.run_process(argv, cwd=REPOSITORY, env={**os.environ, **(env or {})}, check=False)
    return Finished(done.returncode, done.stdout.decode(), done.stderr.decode())


@dataclass(frozen=True)
class Login:
    status: int
    output: str
    visit: Visit


async def login_through_the_browser(
    stack: Stack,
    token_file: Path,
    *,
    password: str = PASSWORD,
    consent: str = "Allow",
    redirect: Callable[[str], str] = lambda location: location,
) -> Login:
    """Run `mcp-aggregator login --no-browser`; sign in at the URL it prints, as the user's browser would."""
    async with run_process(login_argv(stack, token_file), cwd=REPOSITORY) as process:
        match = SIGN_IN_URL.match(await process.wait_for(SIGN_IN_URL, PROCESS_DEADLINE))
        assert match is not None
        visit = await sign_in(match.group(1), username=USER, password=password, consent=consent, redirect=redirect)
        await process.wait_for(re.compile(r"^(Signed in at|mcp-aggregator: )"), PROCESS_DEADLINE)
        with anyio.fail_after(PROCESS_DEADLINE):
            status = await process.process.wait()
        return Login(status, process.output, visit)


def login_argv(stack: Stack, token_file: Path, *extra: str) -> list[str]:
    """`mcp-aggregator login` for the test user's CLI client, printing the URL instead of opening a browser."""
    return [
        sys.executable,
        "-m",
        "aggregator",
        "login",
        "--issuer",
        stack.provider.issuer,
        "--client-id",
        CLI_CLIENT,
        "--scope",
        "mcp",
        "--resource",
        AUDIENCE,
        "--token-file",
        str(token_file),
        "--no-browser",
        *extra,
    ]


def agent_argv(stack: Stack, *identity: str, task: str = "What's the weather in Lisbon?") -> list[str]:
    """`python -m examples.agent` with the scripted model against the stack's gateway."""
    gateway = ["--gateway", stack.gateway_url]
    return [sys.executable, "-m", "examples.agent", *gateway, "--model", "scripted", *identity, task]


def audit_entries(stack: Stack) -> list[dict[str, Any]]:
    path = stack.data_dir / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
