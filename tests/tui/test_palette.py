"""The command palette: an entry per server action; an action the token may not take says why."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

from tests.tui.conftest import Notes, until
from tests.tui.fixed_gateway import FixedTarget
from tui.app import OperatorApp
from tui.screens.detail import DetailScreen

pytestmark = pytest.mark.anyio


async def hits(pilot: Pilot[None], query: str) -> list[str]:
    """What the palette lists for `query` (each entry: its text, a newline, its help)."""
    app = pilot.app
    await pilot.press("ctrl+p", *query)
    commands = app.screen.query_one(CommandList)
    await until(pilot, lambda: commands.option_count > 0, f"palette entries for {query!r}")
    return [commands.get_option_at_index(i).prompt.plain for i in range(commands.option_count)]  # type: ignore[union-attr]


async def test_the_palette_acts_on_servers_and_explains_refusals() -> None:
    notes = Notes()
    app = OperatorApp(FixedTarget(without=frozenset({"remove_service"})), interval=3600)
    async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
        await until(pilot, lambda: len(app.snapshot.services) == 4, "the fixed servers")
        assert (await hits(pilot, "remove wea"))[0] == (
            "Remove server weather…\n"
            "Not allowed: this token may not call remove_service (it is not in the token's tools/list)"
        )
        await pilot.press("enter")
        await until(pilot, lambda: notes.has("this token may not call remove_service"), "the reason")
        assert not isinstance(app.screen, CommandPalette)

        assert (await hits(pilot, "open wea"))[0].startswith("Open server weather\n")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the server's screen")
