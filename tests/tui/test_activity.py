"""The activity tab: another caller's call shows up in the audit tail, with the headline numbers."""

from __future__ import annotations

import pytest
from mcp import MCPError
from textual.widgets import Static

from tests.harness import LiveGateway
from tests.tui.conftest import bystander, console, until
from tui.widgets.activity import WIDTHS, ActivityPane
from tui.widgets.rows import RowsTable

pytestmark = pytest.mark.anyio


def tail(pane: ActivityPane) -> list[tuple[str, ...]]:
    table = pane.query_one("#tail", RowsTable)
    return [tuple(str(cell) for cell in table.get_row_at(index)) for index in range(table.row_count)]


async def test_a_call_by_someone_else_appears_in_the_tail(console_gateway: LiveGateway) -> None:
    app = console(console_gateway, interval=0.3)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.activity is not None, "the activity")
        await pilot.press("3")
        pane = app.screen.query_one(ActivityPane)
        async with bystander(console_gateway, "operators") as other:
            await other.call_tool("weather__get_forecast", {"city": "Paris"})
            with pytest.raises(MCPError, match="Unknown tool"):
                await other.call_tool("weather__get_forcast", {"city": "Paris"})

        who = "user-operators"[: WIDTHS["who"] - 1] + "…"  # the tail cuts names so that it fits 80 columns

        def seen(name: str, result: str) -> bool:
            return any(row[1:4] == (result, name, who) for row in tail(pane))

        await until(pilot, lambda: seen("weather__get_forecast", "ok"), "the allowed call in the tail")
        await until(pilot, lambda: seen("weather__get_forcast", "denied UnknownName"), "the denied call in the tail")
        headline = str(pane.query_one("#headline", Static).render())
        assert headline.startswith("Last 60 s: ") and "calls" in headline and "p95" in headline
        upstreams = pane.query_one("#upstreams", RowsTable)
        assert "weather" in {str(upstreams.get_row_at(index)[0]) for index in range(upstreams.row_count)}

        polling_hidden = len(tail(pane))
        await pilot.press("h")
        assert len(tail(pane)) > polling_hidden, "the console's own polling shows on request"
