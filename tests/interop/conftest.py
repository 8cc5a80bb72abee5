"""One gateway per test module, with authentication, fronting the demo upstreams: weather (streamable
HTTP) and notes (stdio). Third-party clients reach it with a gateway-minted token."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from aggregator.config.settings import AuthSettings, GatewayKeySettings
from aggregator.policy.vending import mint_token
from tests.conftest import gateway_process, http_upstream, wait_connected
from tests.processes import RunningProcess

SECRET = "interop-" + "k" * 40
SUBJECT = "interop-desktop-user"
SCOPE = "interop/demo"
SCOPES = """
interop/demo:
- server: weather
  methods: [tools/list, tools/call, resources/list, resources/read, prompts/list, prompts/get]
  tools: ["*"]
- server: notes
  methods: [tools/list, tools/call, resources/list, resources/read, prompts/list, prompts/get]
  tools: ["*"]
"""
EXPORTED_TOOLS = {
    "weather__get_forecast",
    "weather__get_current_conditions",
    "weather__list_weather_alerts",
    "notes__add_note",
    "notes__search_notes",
    "notes__list_notes",
    "notes__delete_note",
}
FORECAST_ARGUMENTS = {"city": "Lisbon", "days": 2}


@dataclass(frozen=True)
class Gateway:
    """A running gateway that checks tokens, and what a client needs to reach it."""

    url: str
    process: RunningProcess
    weather_url: str
    token: str

    @property
    def resource_metadata_url(self) -> str:
        """Where the 401 challenge must point: the RFC 9728 metadata of the /mcp resource."""
        return self.url.removesuffix("/mcp") + "/.well-known/oauth-protected-resource/mcp"


def write_config(directory: Path, weather_url: str) -> Path:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "notes": {"transport": "stdio", "command": sys.executable, "args": ["-m", "examples.servers.notes"]},
    }
    (directory / "servers.yaml").write_text(json.dumps({"servers": servers}))
    (directory / "scopes.yml").write_text(SCOPES)
    config = {
        "servers_file": "servers.yaml",
        "scopes_file": "scopes.yml",
        "data_dir": "data",
        "auth": {"gateway_keys": [{"kid": "g1", "secret_env": "INTEROP_GATEWAY_KEY"}]},
    }
    path = directory / "gateway.yaml"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    directory = tmp_path_factory.mktemp("interop")
    auth = AuthSettings(gateway_keys=(GatewayKeySettings(kid="g1", secret=SecretStr(SECRET)),))
    token, _ = mint_token(auth, SUBJECT, [SCOPE], 600)
    async with http_upstream("weather") as (weather_url, _):
        config = write_config(directory, weather_url)
        async with gateway_process(
            directory / "servers.yaml",
            "--config",
            str(config),
            env={"INTEROP_GATEWAY_KEY": SECRET},
            insecure_dev=False,
        ) as (url, process):
            await wait_connected(process, "weather")
            await wait_connected(process, "notes")
            yield Gateway(url, process, weather_url, token)
