"""A token with fewer rights: what it may not do is shown disabled, with the reason, and cannot be done."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Static

from tests.harness import LiveGateway
from tests.tui.conftest import console, until
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.widgets.activity import ActivityPane
from tui.widgets.servers import ServersPane

pytestmark = pytest.mark.anyio


async def test_an_operator_sees_which_actions_are_not_allowed_and_why(console_gateway: LiveGateway) -> None:
    app = console(console_gateway, "operators")
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.screen.query_one(ServersPane)
        await until(pilot, lambda: pane.table.row_count == 1, "the one server this token may list")
        assert [s.name for s in app.snapshot.services] == ["weather"]
        assert {
            action: pane.check_action(action, ()) for action in ("toggle_server", "refresh", "remove", "register")
        } == {
            "toggle_server": True,
            "refresh": None,
            "remove": None,
            "register": None,
        }
        note = str(pane.query_one("#note", Static).render())
        assert note == (
            "Not allowed for this token: refresh, remove, register "
            "(refresh_service, remove_service, register_service not in its tools/list)."
        )
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen), "a disabled action does nothing"

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the server's screen")
        remove = app.screen.query_one("#remove", Button)
        assert remove.disabled and remove.tooltip == (
            "this token may not call remove_service (it is not in the token's tools/list)"
        )
        assert not app.screen.query_one("#toggle_server", Button).disabled
        await pilot.press("escape", "3")
        activity = app.screen.query_one(ActivityPane)
        await until(pilot, lambda: app.snapshot.activity_error is not None, "the activity refusal")
        assert str(activity.query_one("#headline", Static).render()) == (
            "Activity unavailable: Reading the audit log needs the list_service permission for all servers."
        )
