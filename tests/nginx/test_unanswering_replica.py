"""A replica whose host is down behind nginx: its connects go unanswered (nothing refuses them), and the
requests hashed to it are served by the live replica once the template's 5 s connect timeout passes,
never after nginx's default 60 s."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, apply
from aggregator.registry.models import load_servers
from tests.harness import connected, free_port, serve_gateway, text_of
from tests.nginx.harness import nginx_settings, requires_nginx, running_nginx

pytestmark = [pytest.mark.anyio, requires_nginx]

CALLS = 20
DEADLINE = 30.0
"""Seconds the calls may take: well past the template's 5 s, well short of nginx's default 60 s."""


@contextmanager
def unanswering_address() -> Iterator[str]:
    """A loopback address whose connects hang, as a down host's do: a listener whose backlog of one is full
    and which never accepts, so the kernel drops every further SYN."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):
            host, port = listener.getsockname()
            yield f"{host}:{port}"


async def test_requests_for_a_replica_whose_host_is_down_are_served_by_another(tmp_path: Path, echo_url: str) -> None:
    servers = {"echo": {"transport": "streamable-http", "url": echo_url}}
    async with serve_gateway(tmp_path / "live", servers=servers, secured=False) as live:
        await live.wait_until(connected("echo"))
        with unanswering_address() as down:
            nginx = nginx_settings(free_port(), gateway_replicas=[live.address, down])
            settings = Settings.model_validate({"data_dir": tmp_path / "data", "nginx": nginx})
            control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
            registered = load_servers(live.servers_file)
            await anyio.to_thread.run_sync(lambda: apply(settings, registered, control, reload=False))
            async with running_nginx(settings) as running:
                with anyio.fail_after(DEADLINE):
                    async with Client(running.url + "/mcp", mode="auto") as client:
                        for number in range(CALLS):  # stateless: each one hashed anew, so some to the down one
                            text = f"call {number}"
                            assert text_of(await client.call_tool("echo__echo", {"text": text})) == text
                timed_out = [line for line in running.process.lines if "while connecting to upstream" in line]
                assert timed_out and all(down in line for line in timed_out), running.process.lines[-20:]
