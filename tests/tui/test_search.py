"""Tool search: the gateway's finder when it has one, else a local match over tools/list, and the UI says which."""

from __future__ import annotations

import mcp_types as types
import pytest
from textual.widgets import Static

from tests.harness import LiveGateway, tool_names
from tests.tui.conftest import bystander, console, until
from tui.models import FINDER
from tui.search import finder_arguments, finder_matches, local_matches
from tui.widgets.tool_detail import ToolDetail
from tui.widgets.tools import ToolsPane


def tool(name: str, description: str = "", schema: dict[str, object] | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or {"type": "object"})


TOOLS = [
    tool("weather__get_forecast", "Get the daily weather forecast for a city."),
    tool("weather__list_weather_alerts", "Active alerts; includes forecast warnings."),
    tool("notes__add_note", "Add a note."),
]


@pytest.mark.anyio
async def test_search_says_how_it_matched(console_gateway: LiveGateway) -> None:
    async with bystander(console_gateway) as other:
        has_finder = FINDER in await tool_names(other)
    app = console(console_gateway)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(app.snapshot.tools), "the tools")
        await pilot.press("slash", *"forecast")
        pane = app.screen.query_one(ToolsPane)
        await until(pilot, lambda: pane.result is not None and pane.result.query == "forecast", "the search result")
        assert pane.result is not None
        note = str(pane.query_one("#search-note", Static).render())
        if has_finder:
            assert pane.result.method == FINDER
        else:
            assert pane.result.method == "local"
            assert "intelligent_tool_finder is not on this gateway: local fuzzy match over tools/list." in note
            assert pane.result.matches[0].name == "weather__get_forecast"
        detail = pane.query_one(ToolDetail)
        assert detail.tool is not None and detail.tool.name == pane.result.matches[0].name


def test_local_match_ranks_names_over_descriptions_and_forgives_typos() -> None:
    assert [m.name for m in local_matches("forecast", TOOLS)] == [
        "weather__get_forecast",
        "weather__list_weather_alerts",
    ]
    assert [m.name for m in local_matches("get forcast", TOOLS)] == ["weather__get_forecast"]
    assert local_matches("   ", TOOLS) == ()


def test_finder_arguments_and_answers_follow_what_the_gateway_offers() -> None:
    registry_style = tool(
        "intelligent_tool_finder", schema={"properties": {"natural_language_query": {}, "top_n_tools": {}}}
    )
    assert finder_arguments(registry_style, "rain") == {"natural_language_query": "rain", "top_n_tools": 10}
    plain = tool("intelligent_tool_finder", schema={"properties": {"query": {}, "top_n": {}}})
    assert finder_arguments(plain, "rain") == {"query": "rain", "top_n": 10}

    listed = {"result": [{"tool_name": "get_forecast", "service_name": "weather", "overall_similarity_score": 0.9}]}
    wrapped = {"results": [{"name": "weather__get_forecast", "server": "weather", "score": 0.9}]}
    for answer in (listed, wrapped):
        (match,) = finder_matches(answer, TOOLS)
        assert (match.name, match.server, match.score) == ("weather__get_forecast", "weather", 0.9)
        assert match.tool is TOOLS[0]
