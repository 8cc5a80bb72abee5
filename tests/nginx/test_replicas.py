"""Two gateway replicas behind nginx: a legacy session stays on one replica; stateless (2026-07-28)
requests are spread over both. Each replica logs one `request method=tools/call` line per call it serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest
from mcp import Client

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, apply
from aggregator.registry.models import load_servers
from tests.conftest import gateway_process, http_upstream, wait_connected
from tests.nginx.harness import RunningNginx, free_port, nginx_settings, requires_nginx, running_nginx
from tests.processes import RunningProcess

pytestmark = [pytest.mark.anyio, requires_nginx]
CALL = re.compile(r"\brequest\b.*method=tools/call target=echo__echo outcome=ok")


@dataclass
class Replicas:
    nginx: RunningNginx
    gateways: tuple[RunningProcess, RunningProcess]

    def marks(self) -> list[int]:
        return [len(gateway.lines) for gateway in self.gateways]

    def calls_served(self, marks: list[int]) -> list[int]:
        """How many echo calls each replica served since `marks`."""
        return [sum(bool(CALL.search(line)) for line in g.lines[m:]) for g, m in zip(self.gateways, marks, strict=True)]


@pytest.fixture(scope="module")
async def replicas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replicas]:
    directory = tmp_path_factory.mktemp("replicas")
    servers_file = directory / "servers.yaml"
    async with http_upstream("echo") as (echo_url, _):
        servers_file.write_text(json.dumps({"servers": {"echo": {"transport": "streamable-http", "url": echo_url}}}))
        async with (
            gateway_process(servers_file) as (first_url, first),
            gateway_process(servers_file) as (
                second_url,
                second,
            ),
        ):
            for gateway in (first, second):
                await wait_connected(gateway, "echo")
            addresses = [url.split("/")[2] for url in (first_url, second_url)]
            nginx = nginx_settings(free_port(), gateway_replicas=addresses)
            settings = Settings.model_validate({"data_dir": directory / "data", "nginx": nginx})
            control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
            servers = load_servers(servers_file)
            await anyio.to_thread.run_sync(lambda: apply(settings, servers, control, reload=False))
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
