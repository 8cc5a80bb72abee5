"""The held tab against a real gateway whose upstream changes its tools (a rug pull) while the console runs.

The operator sees each held definition with why it is held and its diff, approves one and rejects
another with `a` / `x` (each confirmed), and callers then see exactly the approved one. A token
that may not list held definitions is told why; one limited to another server sees none of them.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from tests.harness import ADMIN, LiveGateway, call_structured, connected, serve_gateway, serve_mcp, tool_names
from tests.trust.shop import SCOPES, Shop
from tests.tui.conftest import Notes, console, until
from tui.screens.confirm import ConfirmScreen
from tui.widgets.held import HeldPane
from tui.widgets.rows import RowsTable

pytestmark = pytest.mark.anyio


@pytest.fixture
async def shop_gateway(tmp_path: Path) -> AsyncIterator[tuple[LiveGateway, Shop]]:
    """`shop` behind a gateway that holds changed definitions; the shop has already changed (held: 3)."""
    shop = Shop()
    async with serve_mcp(shop.server) as shop_url:
        servers = {"shop": {"transport": "streamable-http", "url": shop_url, "on_change": "hold"}}
        async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES, rate_limit_per_second=0) as live:
            await live.wait_until(connected("shop"))
            async with live.member("callers") as caller:
                await tool_names(caller)  # the first listing is pinned
            shop.change()
            async with live.member("admins", path=ADMIN) as admin:
                await call_structured(admin, "refresh_service", {"service_name": "shop"})
            yield live, shop


async def held_now(live: LiveGateway) -> list[dict[str, Any]]:
    async with live.member("admins", path=ADMIN, cache=None) as admin:
        return list((await call_structured(admin, "list_held_tools", {}))["held"])


def rows(pane: HeldPane) -> list[str]:
    table = pane.query_one("#held-list", RowsTable)
    return [str(table.get_row_at(index)[1]) for index in range(table.row_count)]


def shown(pane: HeldPane, widget_id: str) -> str:
    """The text of a Static of the pane, as the operator reads it."""
    text = Console(width=200, record=True, file=io.StringIO())
    text.print(pane.query_one(widget_id, Static).content)
    return text.export_text()


async def test_the_operator_approves_one_held_definition_and_rejects_another(
    shop_gateway: tuple[LiveGateway, Shop],
) -> None:
    live, _ = shop_gateway
    assert {held["tool"] for held in await held_now(live)} == {"price", "stock", "refund"}
    app, notes = console(live), Notes()
    async with app.run_test(size=(120, 40), message_hook=notes) as pilot:
        await pilot.press("4")
        pane = app.screen.query_one(HeldPane)
        await until(pilot, lambda: len(rows(pane)) == 3, "the three held definitions")
        assert "3 tool definitions held" in shown(pane, "#held-title")
        assert rows(pane) == ["price", "refund", "stock"]

        diff = shown(pane, "#held-diff")  # the first row, price: its description was reworded
        assert "shop/price" in diff and "changed (on_change: hold)" in diff
        assert "-" in diff and "+" in diff

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: rows(pane) == ["refund", "stock"], "price leaving the held list")
        assert notes.has("Approved shop/price.")

        await pilot.press("x")  # the cursor is on refund now
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")  # changed their mind: nothing happens
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: rows(pane) == ["stock"], "refund leaving the held list")

    assert [held["tool"] for held in await held_now(live)] == ["stock"]
    async with live.member("callers") as caller:
        names = await tool_names(caller)
    assert "shop__price" in names  # approved: served
    assert not {"shop__refund", "shop__stock"} & names  # rejected, still held


@pytest.mark.parametrize(
    ("group", "title"),
    [
        ("callers", "this token may not call list_held_tools"),
        ("weather-admins", "No tool definition is held"),
    ],
)
async def test_a_token_sees_only_the_held_definitions_it_may_administer(
    shop_gateway: tuple[LiveGateway, Shop], group: str, title: str
) -> None:
    live, _ = shop_gateway
    app, notes = console(live, group), Notes()
    async with app.run_test(size=(120, 40), message_hook=notes) as pilot:
        await pilot.press("4")
        pane = app.screen.query_one(HeldPane)
        await until(pilot, lambda: title in shown(pane, "#held-title"), f"'{title}'")
        assert rows(pane) == []
        await pilot.press("a")
        await until(pilot, lambda: bool(notes.seen), "a notification")
        assert not isinstance(app.screen, ConfirmScreen)
    assert len(await held_now(live)) == 3  # nothing was decided
