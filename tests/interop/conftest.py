"""One gateway for every interop test, with authentication, fronting the demo upstreams: weather (streamable
HTTP) and notes (stdio). Third-party clients reach it with a gateway-minted token."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.harness import LiveGateway, connected, serve_gateway, token_for

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

    live: LiveGateway
    weather_url: str
    token: str

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def resource_metadata_url(self) -> str:
        """Where the 401 challenge must point: the RFC 9728 metadata of the /mcp resource."""
        return self.live.base + "/.well-known/oauth-protected-resource/mcp"


@pytest.fixture(scope="package")
async def gateway(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[Gateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "notes": {"transport": "stdio", "command": sys.executable, "args": ["-m", "examples.servers.notes"]},
    }
    async with serve_gateway(tmp_path_factory.mktemp("interop"), servers=servers, scopes=SCOPES) as live:
        await live.wait_until(connected(*servers))
        yield Gateway(live, weather_url, token_for(SUBJECT, scopes=[SCOPE]))
