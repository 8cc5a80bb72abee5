"""The console loses the gateway when it stops, says so (its servers' state is then unknown), and
reconnects by itself when it is back.

The gateway is in-process and restarted on the same port: what the console sees (connections
refused, then accepted again at the same address) is what a restarted gateway process shows it.
"""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY
from tests.harness import LiveGateway, free_port, serve_gateway
from tests.tui.conftest import Notes, until
from tui.app import OperatorApp
from tui.link import Backoff, LinkStatus
from tui.models import UNKNOWN
from tui.target import HttpTarget
from tui.widgets.connection import ConnectionBar
from tui.widgets.server_table import ServersTable

pytestmark = pytest.mark.anyio


async def test_the_console_reconnects_when_the_gateway_restarts(tmp_path: Path) -> None:
    port = free_port()
    notes_server = {"transport": "stdio", "command": sys.executable, "args": ["-m", "examples.servers.notes"]}
    notes_server["cwd"] = str(REPOSITORY)

    def gateway() -> AbstractAsyncContextManager[LiveGateway]:
        servers = {"notes": notes_server}
        return serve_gateway(tmp_path / "gateway", servers=servers, secured=False, port=port)

    notes = Notes()
    app = OperatorApp(HttpTarget(f"http://127.0.0.1:{port}/mcp/admin"), interval=0.5, backoff=Backoff(0.1, 0.3))
    async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
        bar = app.screen.query_one(ConnectionBar)

        def status() -> LinkStatus | None:
            return app.link_state.status if app.link_state else None

        def state() -> str | None:
            return next((service.state for service in app.snapshot.services), None)

        async with gateway():
            await until(pilot, lambda: status() is LinkStatus.CONNECTED, "the first connection")
            await until(pilot, lambda: state() == "healthy", "the server healthy")
        await until(pilot, lambda: status() is LinkStatus.LOST, "the console to notice the gateway is gone")
        assert state() == UNKNOWN, "nothing is known of a server while the gateway is away"
        table = app.screen.query_one(ServersTable)
        assert str(table.get_row_at(0)[3]) == UNKNOWN
        assert str(bar.render()).startswith(f"✕ Gateway unreachable at http://127.0.0.1:{port}/mcp/admin: ")
        assert bar.has_class("-lost")
        assert notes.has("Lost the gateway")

        async with gateway():
            await until(pilot, lambda: status() is LinkStatus.CONNECTED, "the reconnection")
            assert app.link_state is not None and app.link_state.reconnected
            assert str(bar.render()).startswith(f"● Reconnected to http://127.0.0.1:{port}/mcp")
            await until(pilot, lambda: notes.has("Reconnected to the gateway."), "the notification")
