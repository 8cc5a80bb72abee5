"""The tools tab: search the tools this token can see, with the gateway's finder or locally; try one.

`enter` on a result opens the try-it form for that tool (`TryTool`); `enter` in the search box
moves to the results.
"""

from __future__ import annotations

import anyio
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from tui import formatting
from tui.errors import ConsoleError
from tui.link import GatewayLink
from tui.messages import TryTool
from tui.models import SearchResult, Snapshot, ToolMatch
from tui.search import server_of
from tui.widgets.rows import RowsTable
from tui.widgets.tool_detail import ToolDetail

TYPING_PAUSE = 0.15
"""Seconds of quiet typing before a search starts (a newer keystroke cancels the older search)."""


class ToolsPane(Vertical):
    """A search box over the tools list; with an empty box, every tool the token can see."""

    DEFAULT_CSS = """
    ToolsPane #search-note {
        height: auto;
        color: $text-muted;
        padding: 0 1;
    }
    ToolsPane #matches {
        height: 1fr;
    }
    ToolsPane ToolDetail {
        height: 1fr;
        border-left: none;
        border-top: hkey $foreground 20%;
    }
    """

    BINDINGS = [
        Binding("escape", "leave_search", "Clear / leave search", show=False),
        Binding("enter", "try_tool", "Try it"),
    ]

    snapshot: reactive[Snapshot] = reactive(Snapshot)
    result: reactive[SearchResult | None] = reactive(None)

    def __init__(self, link: GatewayLink, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._link = link
        self._matches: tuple[ToolMatch, ...] = ()

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search tools: words or part of a name", id="search", compact=True)
        yield Static(id="search-note")
        yield RowsTable("Tool", "Server", "Score", "Description", id="matches")
        yield ToolDetail()

    def watch_snapshot(self, old: Snapshot, snapshot: Snapshot) -> None:
        if snapshot.tools != old.tools and not self.query_one("#search", Input).value.strip():
            self._show_all(snapshot)

    def _show_all(self, snapshot: Snapshot) -> None:
        matches = tuple(
            ToolMatch(t.name, server_of(t.name), t.description or "", 0.0, t)
            for t in sorted(snapshot.tools, key=lambda tool: tool.name)
        )
        self.result = SearchResult("", matches, "list", f"{len(matches)} tools in this token's tools/list.")

    @on(Input.Changed, "#search")
    def _query_changed(self, event: Input.Changed) -> None:
        if event.value.strip():
            self._search(event.value.strip())
        else:
            self.workers.cancel_group(self, "search")
            self._show_all(self.snapshot)

    @work(exclusive=True, group="search")
    async def _search(self, query: str) -> None:
        await anyio.sleep(TYPING_PAUSE)
        try:
            self.result = await self._link.gateway.search(query)
        except ConsoleError as error:
            self.result = SearchResult(query, (), "error", f"Search failed: {error}")

    def watch_result(self, result: SearchResult | None) -> None:
        if result is None or len(self.query("#search-note, #matches")) < 2:
            return  # or the console is closing: a search answering late has nowhere to show
        if result.method == "list":
            note = result.note or ""
        elif result.method == "error":
            note = f"[red]{result.note}[/]"
        else:
            how = result.note or f"Found with the gateway's {result.method}."
            note = f"{len(result.matches)} matches for [b]{result.query}[/]. {how}"
        self.query_one("#search-note", Static).update(note)
        scored = result.method not in ("list", "error")
        rows = [
            (m.name, m.server, f"{m.score:.2f}" if scored else "", formatting.one_line(m.description, 60))
            for m in result.matches
        ]
        if self.query_one("#matches", RowsTable).show(rows, [str(index) for index in range(len(rows))]):
            self._matches = result.matches
            self.query_one(ToolDetail).tool = result.matches[0].tool if result.matches else None

    @on(DataTable.RowHighlighted, "#matches")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = int(str(event.row_key.value))
        if index < len(self._matches):
            self.query_one(ToolDetail).tool = self._matches[index].tool

    @on(DataTable.RowSelected, "#matches")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_try_tool()

    @on(Input.Submitted, "#search")
    def _to_results(self) -> None:
        self.query_one("#matches", RowsTable).focus()

    def action_try_tool(self) -> None:
        """Open the try-it form for the highlighted result."""
        table = self.query_one("#matches", RowsTable)
        row = table.cursor_row
        if table.row_count and 0 <= row < len(self._matches) and (tool := self._matches[row].tool) is not None:
            self.post_message(TryTool(tool))

    def action_leave_search(self) -> None:
        """Clear the search box; when it is already empty, move to the results (so 1-3 switch tabs again)."""
        search = self.query_one("#search", Input)
        if search.value:
            search.value = ""
        else:
            self.query_one("#matches", RowsTable).focus()

    def focus_search(self) -> None:
        self.query_one("#search", Input).focus()
