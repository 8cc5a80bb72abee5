"""One gateway for every interop test, with authentication, fronting the demo upstreams: weather (streamable
HTTP) and notes (stdio). Third-party clients reach it with a gateway-minted token."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

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


@pytest.fixture(scope="package")
async def gateway(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "notes": {"transport": "stdio", "command": sys.executable, "args": ["-m", "examples.servers.notes"]},
    }
    async with serve_gateway(tmp_path_factory.mktemp("interop"), servers=servers, scopes=SCOPES) as live:
        await live.wait_until(connected(*servers))
        yield live


@pytest.fixture
def token() -> str:
    """A gateway token for SUBJECT, holding SCOPE."""
    return token_for(SUBJECT, scopes=[SCOPE])
