"""What the console shows against fixed data: keys typed into the search box stay text, the
activity tail fits 80 columns, a server's whole last error is shown, and a tool's error result
is shown as its answer."""

from __future__ import annotations

import pytest
from rich.console import Group
from rich.text import Text
from textual.widgets import Input, Static

from tests.tui.conftest import until
from tests.tui.fixed_gateway import SERVICES, FixedTarget
from tui.app import OperatorApp
from tui.messages import OpenServer
from tui.models import ToolOutcome
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.screens.try_tool import describe_outcome
from tui.widgets.activity import ActivityPane
from tui.widgets.rows import RowsTable
from tui.widgets.tools import ToolsPane

pytestmark = pytest.mark.anyio
QUIET = 3600.0


def single_keys() -> list[str]:
    """Every printable key some binding of the main screen (or its panes, or the app) is bound to."""
    from tui.widgets.activity import ActivityPane as Activity
    from tui.widgets.servers import ServersPane

    keys = {"/", "q"}
    for owner in (OperatorApp, MainScreen, ServersPane, Activity, ToolsPane):
        for binding in owner.BINDINGS:
            for key in str(getattr(binding, "key", "")).split(","):
                if len(key) == 1 and key.isprintable():
                    keys.add(key)
    return sorted(keys)


async def test_a_bound_key_typed_in_the_search_box_is_text() -> None:
    """Each bound key in turn, in one console (a console per key cost a start-up each, for the same checks)."""
    keys = single_keys()
    assert len(keys) > 10, keys
    app = OperatorApp(FixedTarget(), interval=QUIET)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(app.snapshot.tools), "the tools")
        for key in keys:
            await pilot.press("slash")
            search = app.screen.query_one("#search", Input)
            assert app.focused is search, key
            search.value = ""
            await pilot.press("a", key, "b")
            assert search.value == f"a{key}b"
            assert app.is_running and isinstance(app.screen, MainScreen), key
            assert app.focused is search, key


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_column_of_the_activity_tail_fits(size: tuple[int, int]) -> None:
    app = OperatorApp(FixedTarget(), interval=QUIET)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.snapshot.activity is not None, "the activity")
        await pilot.press("3")
        table = app.screen.query_one(ActivityPane).query_one("#tail", RowsTable)
        await until(pilot, lambda: table.row_count == 3, "the tail")
        widths = [column.get_render_width(table) for column in table.columns.values()]
        assert sum(widths) <= table.scrollable_content_region.width, widths
        results = {str(table.get_row_at(row)[1]) for row in range(table.row_count)}
        assert results == {"ok", "denied UnknownName", "UpstreamUnavailable"}


async def test_a_servers_screen_shows_its_whole_last_error() -> None:
    app = OperatorApp(FixedTarget(), interval=QUIET)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(app.snapshot.services), "the servers")
        app.post_message(OpenServer("notes"))
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the server's screen")
        expected = next(service["last_error"] for service in SERVICES if service["name"] == "notes")
        assert "\n" in expected
        assert str(app.screen.query_one("#last-error", Static).render()) == f"Last error:\n{expected}"


@pytest.mark.parametrize(
    ("outcome", "heading"),
    [
        (ToolOutcome("t", False, "sunny"), "Result"),
        (ToolOutcome("t", True, "Unknown city 'Atlantis'."), "Error result"),
        (ToolOutcome("t", False, "", '{\n  "a": 1\n}'), "Result"),
    ],
)
def test_an_answer_is_shown_with_what_kind_it_is(outcome: ToolOutcome, heading: str) -> None:
    rendered = describe_outcome(outcome)
    assert isinstance(rendered, Group)
    first = rendered.renderables[0]
    assert isinstance(first, Text) and str(first) == heading
    assert ("red" in str(first.style)) == outcome.is_error
