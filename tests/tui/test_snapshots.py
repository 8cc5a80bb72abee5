"""SVG screenshots of the main screens at 80x24 and 120x40, against fixed data (see `fixed_gateway`).

A screenshot that differs fails the test and is written next to the test's temporary files for
a look; `UPDATE_SNAPSHOTS=1` rewrites the committed ones in `__snapshots__/` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import until
from tests.tui.fixed_gateway import FixedTarget
from tui.app import OperatorApp
from tui.models import Filter
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.screens.register import RegisterScreen
from tui.widgets.tools import ToolsPane

pytestmark = pytest.mark.anyio
SNAPSHOTS = Path(__file__).parent / "__snapshots__"
STABLE_SHOTS = 6  # under load a refresh can land a couple of pauses late
SETTLE_DEADLINE = 60.0
"""A bound, not a wait: 10 s ran out on the first scene with five jobs on two cores (both sizes failed)."""
QUIET = 3600.0
"""Poll interval: the fixed gateway never changes, so one poll is all a screenshot needs."""


class Album:
    """Screenshots compared with the committed ones; every difference is collected, then reported."""

    def __init__(self, app: OperatorApp, pilot: Pilot[None], size: str, scratch: Path) -> None:
        self._app, self._pilot, self._size, self._scratch = app, pilot, size, scratch
        self.differences: list[str] = []

    async def _settled(self) -> str:
        """The screenshot once it stops changing (footers and tab underlines update a refresh or two late)."""
        shots = [self._app.export_screenshot(title="mcp-aggregator tui")]
        with anyio.fail_after(SETTLE_DEADLINE):
            while len(shots) < STABLE_SHOTS or len(set(shots[-STABLE_SHOTS:])) > 1:
                await self._pilot.wait_for_scheduled_animations()
                await self._pilot.pause()
                shots.append(self._app.export_screenshot(title="mcp-aggregator tui"))
        return shots[-1]

    async def take(self, scene: str) -> None:
        for field in self._app.screen.query(Input):
            field.cursor_blink = False
        actual = await self._settled()
        name = f"{scene}_{self._size}.svg"
        committed = SNAPSHOTS / name
        if os.environ.get("UPDATE_SNAPSHOTS") == "1":
            SNAPSHOTS.mkdir(exist_ok=True)
            committed.write_text(actual)
        elif not committed.exists():
            self.differences.append(f"{name}: no committed screenshot (run with UPDATE_SNAPSHOTS=1)")
        elif committed.read_text() != actual:
            (self._scratch / name).write_text(actual)
            self.differences.append(f"{name}: differs; this run's is {self._scratch / name}")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_main_screens_look_as_committed(size: tuple[int, int], tmp_path: Path) -> None:
    app = OperatorApp(FixedTarget(), interval=QUIET)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: len(app.snapshot.services) == 4, "the fixed servers")
        main = app.screen
        assert isinstance(main, MainScreen)
        album = Album(app, pilot, f"{size[0]}x{size[1]}", tmp_path)
        await album.take("servers")
        app.show_filter(Filter.ISSUES)
        await album.take("servers_issues")
        app.show_filter(Filter.ALL)

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.contents is not None, "detail")
        await album.take("detail")
        await pilot.press("escape")

        main.action_show("tools")
        main.query_one("#search", Input).value = "forecast"
        pane = main.query_one(ToolsPane)
        await until(pilot, lambda: pane.result is not None and pane.result.query == "forecast", "the search")
        await album.take("tools")
        main.action_show("activity")
        await album.take("activity")
        main.action_show("held")
        await album.take("held")

        main.action_show("servers")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RegisterScreen), "the form")
        app.screen.query_one("#name", Input).value = "Bad"
        await album.take("register")
        await pilot.press("escape")
        app.theme = "textual-light"
        await album.take("servers_light")
    assert not album.differences, "\n".join(album.differences)
