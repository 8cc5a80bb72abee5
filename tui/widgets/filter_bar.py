"""The filter bar over the servers table: counts per filter, the current one highlighted, click to choose."""

from __future__ import annotations

from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from tui.models import Filter
from tui.widgets.server_table import Sort


class FilterBar(Static):
    """`All 4 · Enabled 3 · Disabled 1 · Issues 1`, the current filter highlighted; click to choose."""

    DEFAULT_CSS = """
    FilterBar {
        height: 1;
        padding: 0 1;
    }
    """

    current: reactive[Filter] = reactive(Filter.ALL)
    counts: reactive[tuple[int, ...]] = reactive((0, 0, 0, 0))
    order: reactive[Sort] = reactive(("name", False))

    class Chosen(Message):
        """The operator clicked a filter."""

        def __init__(self, which: Filter) -> None:
            super().__init__()
            self.which = which

    def render(self) -> str:
        parts = []
        for which, count in zip(Filter, self.counts, strict=True):
            label = f"{which.value.capitalize()} {count}"
            style = "reverse bold" if which is self.current else "underline"
            parts.append(f"[{style}][@click=choose('{which.value}')]{label}[/][/]")
        column, reverse = self.order
        return " · ".join(parts) + f"  [dim]sort: {column} {'▼' if reverse else '▲'}[/]"

    def action_choose(self, which: str) -> None:
        self.post_message(self.Chosen(Filter(which)))
