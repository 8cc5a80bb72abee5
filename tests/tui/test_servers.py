"""The servers tab against a real gateway: rows, filters, sorting, toggling, refreshing all, removing."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from aggregator.registry.models import load_servers
from tests.harness import LiveGateway, tool_names
from tests.tui.conftest import Notes, bystander, console, until
from tui.app import OperatorApp
from tui.models import Filter, Progress, Service
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.widgets.filter_bar import FilterBar
from tui.widgets.server_table import ServersTable
from tui.widgets.servers import ServersPane

pytestmark = pytest.mark.anyio


def rows(table: ServersTable) -> list[str]:
    return [str(table.get_row_at(index)[0]) for index in range(table.row_count)]


def service(app: OperatorApp, name: str) -> Service | None:
    return next((s for s in app.snapshot.services if s.name == name), None)


async def settled(pilot: Pilot[None], app: OperatorApp, count: int = 2) -> ServersPane:
    """The servers pane once `count` servers are listed and all are healthy."""
    pane = app.screen.query_one(ServersPane)
    await until(
        pilot,
        lambda: pane.table.row_count == count and all(s.state == "healthy" for s in app.snapshot.services),
        f"{count} healthy servers in the table",
    )
    return pane


async def test_servers_are_listed_with_counts_filters_and_sorting(console_gateway: LiveGateway) -> None:
    app = console(console_gateway)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await settled(pilot, app)
        assert rows(pane.table) == ["echo", "weather"]
        assert pane.query_one(FilterBar).counts == (2, 2, 0, 0)
        visible = {}
        for expected in (Filter.ENABLED, Filter.DISABLED, Filter.ISSUES, Filter.ALL):
            await pilot.press("f")
            assert pane.filter is expected
            visible[expected] = rows(pane.table)
        assert visible == {
            Filter.ENABLED: ["echo", "weather"],
            Filter.DISABLED: [],
            Filter.ISSUES: [],
            Filter.ALL: ["echo", "weather"],
        }

        # Click the "Tools" header: most tools first (echo has 4, weather 3); again: the reverse.
        table = pane.table
        columns = list(table.columns.values())
        tools_x = sum(column.get_render_width(table) for column in columns[:5]) + 1
        await pilot.click(ServersTable, offset=(tools_x, 0))
        assert pane.order == ("tools", False)
        assert rows(table) == ["echo", "weather"]
        await pilot.click(ServersTable, offset=(tools_x, 0))
        assert pane.order == ("tools", True)
        assert rows(table) == ["weather", "echo"]


async def test_toggling_a_server_changes_what_the_gateway_serves(console_gateway: LiveGateway) -> None:
    notes = Notes()
    app = console(console_gateway)
    try:
        async with app.run_test(size=(120, 40), message_hook=notes) as pilot:
            pane = await settled(pilot, app)
            assert pane.table.selected is not None and pane.table.selected.name == "echo"
            await pilot.press("t")
            await until(pilot, lambda: (s := service(app, "echo")) is not None and not s.enabled, "echo disabled")
            assert notes.has("Disabled 'echo'.")
            async with bystander(console_gateway) as other:
                assert not any(name.startswith("echo__") for name in await tool_names(other))

            await pilot.press("f", "f")
            assert rows(pane.table) == ["echo"]
            await pilot.press("t")
            await until(pilot, lambda: (s := service(app, "echo")) is not None and s.state == "healthy", "echo back")
            async with bystander(console_gateway) as other:
                assert "echo__echo" in await tool_names(other)
    finally:
        async with bystander(console_gateway) as other:
            await other.call_tool("toggle_service", {"service_name": "echo", "enabled": True})


async def test_refresh_all_reports_progress_then_the_outcome(console_gateway: LiveGateway) -> None:
    notes = Notes()
    seen: list[Progress | None] = []
    app = console(console_gateway)
    async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
        await settled(pilot, app)

        def record(progress: Progress | None) -> None:
            seen.append(progress)

        app.watch(app, "progress", record, init=False)
        await pilot.press("R")
        await until(pilot, lambda: notes.has("Refreshed 2 servers."), "the refresh-all notification")
        steps = [step for step in seen if step is not None]
        assert steps[0] == Progress(0, 2) and max(step.done for step in steps) == 2
        assert seen[-1] is None and app.progress is None


async def test_removing_asks_first_and_then_the_server_is_gone(console_gateway: LiveGateway, echo_url: str) -> None:
    async with bystander(console_gateway) as other:
        await other.call_tool("register_service", {"service_name": "scratch", "url": echo_url})
    app = console(console_gateway)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            pane = app.screen.query_one(ServersPane)
            await until(pilot, lambda: "scratch" in rows(pane.table), "the new server in the table")
            pane.table.move_cursor(row=rows(pane.table).index("scratch"))
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("n")
            assert isinstance(app.screen, MainScreen)
            assert "scratch" in load_servers(console_gateway.servers_file).servers

            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: "scratch" not in rows(pane.table), "the server gone from the table")
            assert "scratch" not in load_servers(console_gateway.servers_file).servers
    finally:
        if "scratch" in load_servers(console_gateway.servers_file).servers:
            async with bystander(console_gateway) as other:
                await other.call_tool("remove_service", {"service_name": "scratch"})
