"""The follower's own loop: it reads its registries when the gateway starts, and follows servers.yaml's
`registries:` as they are edited by hand (a registry added is read at once, one removed takes its servers)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import yaml

from tests.federation.conftest import DEADLINE, FakeRegistry, offers, published, serve_follower
from tests.harness import serve_asgi
from tests.policies import admins_policy

pytestmark = pytest.mark.anyio


async def test_the_follower_reads_its_registries_when_it_starts(tmp_path: Path, weather_url: str) -> None:
    registry = FakeRegistry(body={"servers": [published("io.github.acme/weather", weather_url)]})
    async with serve_asgi(registry.app(), path="/v0.1/servers") as url:
        registries = {"acme": {"url": url, "on_change": "accept"}}
        async with serve_follower(tmp_path / "follower", registries=registries, scopes=admins_policy()) as follower:
            await follower.wait_until(offers("weather", "get_forecast"), DEADLINE)
    [request] = registry.requests[:1]
    assert request.query_params["version"] == "latest" and request.query_params["limit"] == "100"


async def test_a_registry_added_then_removed_by_hand_is_followed_then_dropped(tmp_path: Path, weather_url: str) -> None:
    registry = FakeRegistry(body={"servers": [published("io.github.acme/weather", weather_url)]})
    async with (
        serve_asgi(registry.app(), path="/v0.1/servers") as url,
        serve_follower(
            tmp_path / "follower", registries={}, scopes=admins_policy(), servers_reload_interval=0.1
        ) as follower,
    ):
        servers_file = anyio.Path(follower.servers_file)
        document = {"servers": {}, "registries": {"acme": {"url": url, "on_change": "accept"}}}
        await servers_file.write_text(yaml.safe_dump(document))
        await follower.wait_until(offers("weather", "get_forecast"), DEADLINE)

        await servers_file.write_text(yaml.safe_dump({"servers": {}}))
        await follower.wait_until(lambda pool: not list(pool), DEADLINE)
        assert follower.gateway.federation is not None
        assert follower.gateway.federation.statuses() == []
