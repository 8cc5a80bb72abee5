"""A server's screen: its tools (with descriptions and schemas), resources and prompts, from the real gateway."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList

from tests.harness import LiveGateway
from tests.tui.conftest import console, until
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.widgets.servers import ServersPane
from tui.widgets.tool_detail import ToolDetail

pytestmark = pytest.mark.anyio


async def test_a_servers_screen_shows_what_it_exports(console_gateway: LiveGateway) -> None:
    app = console(console_gateway)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.screen.query_one(ServersPane)
        await until(pilot, lambda: pane.table.row_count >= 2, "the servers")
        pane.table.move_cursor(
            row=[s.name for s in sorted(app.snapshot.services, key=lambda s: s.name)].index("weather")
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.contents is not None, "contents")
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.contents is not None
        assert {tool.name for tool in screen.contents.tools} == {
            "weather__get_forecast",
            "weather__get_current_conditions",
            "weather__list_weather_alerts",
        }
        assert [str(resource.uri) for resource in screen.contents.resources] == ["weather+weather://cities"]
        assert [prompt.name for prompt in screen.contents.prompts] == ["weather__plan_outdoor_day"]

        options = screen.query_one("#tool-list", OptionList)
        assert [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)] == [
            tool.name.removeprefix("weather__") for tool in screen.contents.tools
        ]
        detail = screen.query_one(ToolDetail)
        assert detail.tool is screen.contents.tools[0]
        await pilot.press("down")
        assert detail.tool is screen.contents.tools[1]
        assert "city" in detail.tool.input_schema["properties"]

        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
