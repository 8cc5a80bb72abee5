"""What the gateway declares to clients: it sends list_changed for tools, prompts and resources, so it says so.

Clients built on the TypeScript SDK v1 ignore `notifications/tools/list_changed` from a server that
declared `listChanged: false`; hosts would then never refresh after a registration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import ERAS, Era, serve_gateway, serve_upstream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("era", ERAS)
async def test_list_changed_and_subscribe_are_declared(tmp_path: Path, era: Era) -> None:
    async with (
        serve_upstream("weather") as weather,
        serve_gateway(
            tmp_path, servers={"weather": {"transport": "streamable-http", "url": weather}}, secured=False
        ) as live,
        live.client(era=era) as client,
    ):
        capabilities = client.server_capabilities
    assert capabilities.tools is not None and capabilities.tools.list_changed
    assert capabilities.prompts is not None and capabilities.prompts.list_changed
    assert capabilities.resources is not None and capabilities.resources.list_changed
    assert capabilities.resources.subscribe
