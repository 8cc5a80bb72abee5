"""Two gateway replicas behind nginx: a legacy session stays on one replica; stateless (2026-07-28)
requests are spread over both. Each replica counts the calls it serves (its metrics' request counter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest
from mcp import Client

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, apply
from aggregator.registry.models import load_servers
from tests.harness import LiveGateway, connected, free_port, serve_gateway
from tests.nginx.harness import RunningNginx, nginx_settings, requires_nginx, running_nginx

pytestmark = [pytest.mark.anyio, requires_nginx]


@dataclass
class Replicas:
    nginx: RunningNginx
    gateways: tuple[LiveGateway, LiveGateway]

    def marks(self) -> list[int]:
        """How many echo calls each replica has served so far (its own request counter)."""
        return [served(live) for live in self.gateways]

    def calls_served(self, marks: list[int]) -> list[int]:
        """How many echo calls each replica served since `marks`."""
        return [now - then for now, then in zip(self.marks(), marks, strict=True)]


def served(live: LiveGateway) -> int:
    metrics = live.gateway.guard.metrics
    assert metrics is not None
    return int(metrics.requests.value("tools/call", "echo", "echo__echo", "ok"))


@pytest.fixture(scope="module")
async def replicas(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[Replicas]:
    directory = tmp_path_factory.mktemp("replicas")
    servers = {"echo": {"transport": "streamable-http", "url": echo_url}}
    async with (
        serve_gateway(directory / "first", servers=servers, secured=False) as first,
        serve_gateway(directory / "second", servers=servers, secured=False) as second,
    ):
        for live in (first, second):
            await live.wait_until(connected("echo"))
        nginx = nginx_settings(free_port(), gateway_replicas=[first.address, second.address])
        settings = Settings.model_validate({"data_dir": directory / "data", "nginx": nginx})
        control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
        registered = load_servers(first.servers_file)
        await anyio.to_thread.run_sync(lambda: apply(settings, registered, control, reload=False))
        async with running_nginx(settings) as running:
            yield Replicas(running, (first, second))


async def test_a_legacy_session_stays_on_one_replica(replicas: Replicas) -> None:
    for _ in range(5):  # five sessions: wherever each one starts, all of its calls land there
        marks = replicas.marks()
        async with Client(replicas.nginx.url + "/mcp", mode="legacy") as client:
            for number in range(10):
                await client.call_tool("echo__echo", {"text": f"legacy {number}"})
        assert sorted(replicas.calls_served(marks)) == [0, 10]


async def test_stateless_requests_are_served_by_both_replicas(replicas: Replicas) -> None:
    marks = replicas.marks()
    async with Client(replicas.nginx.url + "/mcp", mode="auto") as client:
        for number in range(30):
            await client.call_tool("echo__echo", {"text": f"modern {number}"})
    served = replicas.calls_served(marks)
    assert sum(served) == 30
    assert min(served) > 0, served  # all on one replica: 2 x 2^-30
