"""A gateway that manages nginx: registering and removing servers changes what nginx serves, at once."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, apply
from aggregator.registry.models import load_servers
from tests.harness import connected, serve_gateway, write_files
from tests.nginx.harness import free_port, nginx_settings, requires_nginx, running_nginx

pytestmark = [pytest.mark.anyio, requires_nginx]


async def served(base: str, server: str) -> bool:
    """Whether nginx has a passthrough location for `server` (404 means it does not)."""
    async with httpx2.AsyncClient(trust_env=False) as http:
        return (await http.get(f"{base}/{server}/mcp")).status_code != 404


async def test_registered_servers_appear_in_nginx_and_removed_ones_go(tmp_path: Path, echo_url: str) -> None:
    gateway_port = free_port()  # nginx's config names the gateway before the gateway runs
    nginx = nginx_settings(free_port(), gateway_replicas=[f"127.0.0.1:{gateway_port}"], manage=True)
    servers = {"first": {"transport": "streamable-http", "url": echo_url}}
    settings = Settings.model_validate({"data_dir": tmp_path / "data", "nginx": nginx})
    control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
    apply(settings, load_servers(write_files(tmp_path, servers, None)), control, reload=False)
    async with (
        running_nginx(settings) as proxy,
        serve_gateway(
            tmp_path,
            servers=servers,
            secured=False,
            port=gateway_port,
            nginx=nginx,
            admin_allowed_networks=["127.0.0.0/8"],  # registrations reach the loopback echo upstream
        ) as live,
    ):
        await live.wait_until(connected("first"))
        assert await served(proxy.url, "first")
        assert not await served(proxy.url, "second")
        async with Client(proxy.url + "/mcp/admin") as admin:  # the management endpoint, through nginx
            mark = len(proxy.process.lines)
            await admin.call_tool("register_service", {"service_name": "second", "url": echo_url})
            await proxy.wait_reloaded(mark)
            assert await served(proxy.url, "second")
            mark = len(proxy.process.lines)
            await admin.call_tool("remove_service", {"service_name": "first"})
            await proxy.wait_reloaded(mark)
        assert not await served(proxy.url, "first")
        assert await served(proxy.url, "second")
        assert proxy.problems() == []
        assert "nginx.reloaded" in live.log.output
