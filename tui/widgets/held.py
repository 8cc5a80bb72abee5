"""The held tab: tool definitions the gateway keeps out of every list and call until an operator decides.

One row per held definition (new, changed, or flagged by the description scanner); below the table
the highlighted one's scanner findings and its diff against the pinned definition. `a` approves
(pinned and served at once), `x` rejects (kept out until the server changes it); both ask first,
and both send the fingerprint shown, so a definition that changed meanwhile is not decided blind.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from tui import formatting
from tui.messages import DecideHeld
from tui.models import HELD, HeldTool, Snapshot
from tui.widgets.rows import Row, RowsTable


class HeldPane(Vertical):
    """Held definitions, the highlighted one's findings and diff; `a` approves, `x` rejects."""

    DEFAULT_CSS = """
    HeldPane #held-title {
        height: auto;
        padding: 0 1;
    }
    HeldPane #held-list {
        height: auto;
        max-height: 10;
    }
    HeldPane #held-detail {
        height: 1fr;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("a", "decide(True)", "Approve"),
        Binding("x", "decide(False)", "Reject"),
    ]

    snapshot: reactive[Snapshot] = reactive(Snapshot)

    def compose(self) -> ComposeResult:
        yield Static(id="held-title")
        yield RowsTable("Server", "Tool", "Change", "Why", "Held since", id="held-list")
        with VerticalScroll(id="held-detail"):
            yield Static(id="held-diff")

    @property
    def highlighted(self) -> HeldTool | None:
        table = self.query_one("#held-list", RowsTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((held for held in self.snapshot.held if held.key == key), None)

    def watch_snapshot(self, snapshot: Snapshot) -> None:
        title = self.query_one("#held-title", Static)
        if snapshot.held_error is not None:
            title.update(f"Held tool definitions unavailable: {snapshot.held_error}")
        elif not snapshot.abilities.tools:
            title.update("Held tool definitions: not loaded yet")
        elif not snapshot.held:
            title.update("No tool definition is held: every tool the servers offer is pinned and served.")
        else:
            count = len(snapshot.held)
            title.update(
                f"{count} tool definition{'s' if count != 1 else ''} held out of every list and call until decided"
            )
        table = self.query_one("#held-list", RowsTable)
        table.show([_cells(held) for held in snapshot.held], [held.key for held in snapshot.held])
        self._show_detail()

    @on(DataTable.RowHighlighted, "#held-list")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        held = self.highlighted
        self.query_one("#held-diff", Static).update(detail(held) if held is not None else "")

    def action_decide(self, approve: bool) -> None:
        if (reason := self.snapshot.abilities.reason(HELD)) is not None:
            self.notify(f"Cannot decide: {reason}.", severity="warning")
            return
        held = self.highlighted
        if held is None:
            self.notify("No held tool definition is selected.", severity="warning")
            return
        self.post_message(DecideHeld(held, approve))


def detail(held: HeldTool) -> RenderableType:
    """The scanner's findings (if any), then the unified diff of pinned against offered definition."""
    parts: list[RenderableType] = [Text(f"{held.key} · {held.reason} · {held.fingerprint}", style="bold")]
    for finding in held.findings:
        parts.append(Text(f"⚠ {finding.rule}: {finding.reason} ({finding.place}: {finding.excerpt})", style="yellow"))
    parts.append(Syntax(held.diff or "(no diff)", "diff", theme="ansi_dark", word_wrap=True))
    return Group(*parts)


def _cells(held: HeldTool) -> Row:
    why = Text(formatting.one_line(held.reason, 30), style="yellow" if held.findings else "")
    return (held.server, formatting.one_line(held.tool, 28), held.change, why, held.held_since.replace("T", " "))
