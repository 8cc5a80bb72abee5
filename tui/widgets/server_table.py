"""The table of servers: one row per server, filtered and sorted, keeping the cursor on its server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable

from tui import formatting
from tui.models import Filter, Service
from tui.widgets.rows import set_columns

COLUMNS = (
    ("name", "Name"),
    ("transport", "Transport"),
    ("enabled", "On"),
    ("state", "State"),
    ("latency", "Latency"),
    ("tools", "Tools"),
    ("checked", "Checked"),
    ("error", "Last error"),
)
STATE_ORDER = {"unhealthy": 0, "auth-expired": 1, "degraded": 2, "connecting": 3, "healthy": 4, "disabled": 5}
SORT_KEYS: dict[str, Callable[[Service], Any]] = {
    "name": lambda s: s.name,
    "transport": lambda s: (s.transport, s.name),
    "enabled": lambda s: (not s.enabled, s.name),
    "state": lambda s: (STATE_ORDER.get(s.state, 9), s.name),
    "latency": lambda s: (s.latency_ms is None, s.latency_ms or 0.0, s.name),
    "tools": lambda s: (-s.tools, s.name),
    "checked": lambda s: (-(s.last_check or 0.0), s.name),
    "error": lambda s: (s.last_error is None, s.last_error or "", s.name),
}
Sort = tuple[str, bool]
"""A column key, and whether the order is reversed."""


class ServersTable(DataTable[Text | str]):
    """One row per server; the rows follow `services`, `filter` and `order`, keeping the cursor's server."""

    BINDINGS = [Binding("enter", "select_cursor", "Open")]

    services: reactive[tuple[Service, ...]] = reactive(())
    filter: reactive[Filter] = reactive(Filter.ALL)
    order: reactive[Sort] = reactive(("name", False))

    class OrderChosen(Message):
        """The operator clicked a column header: sort by it (again: the other way round)."""

        def __init__(self, order: Sort) -> None:
            super().__init__()
            self.order = order

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: list[tuple[Text | str, ...]] = []

    def on_mount(self) -> None:
        self._rebuild(force=True)

    @property
    def selected(self) -> Service | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return next((service for service in self.services if service.name == key), None)

    def watch_services(self) -> None:
        self._rebuild()

    def watch_filter(self) -> None:
        self._rebuild()

    def watch_order(self) -> None:
        self._rebuild()

    def _rebuild(self, *, force: bool = False) -> None:
        if not self.is_mounted:
            return  # on_mount builds the table from whatever arrived before
        column, reverse = self.order
        rows = sorted((s for s in self.services if s.matches(self.filter)), key=SORT_KEYS[column], reverse=reverse)
        cells = [_cells(service) for service in rows]
        if cells == self._shown and not force:
            return
        keep = self.selected.name if self.selected else None
        self._shown = cells
        # Widths come from every server, so a filter never makes the columns jump.
        set_columns(self, COLUMNS, [_cells(service) for service in self.services])
        for service, row in zip(rows, cells, strict=True):
            self.add_row(*row, key=service.name)
        names = [service.name for service in rows]
        if keep in names:
            self.move_cursor(row=names.index(keep), animate=False)

    @on(DataTable.HeaderSelected)
    def _sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.post_message(self.OrderChosen((column, not self.order[1] if self.order[0] == column else False)))


def _cells(service: Service) -> tuple[Text | str, ...]:
    return (
        service.name,
        formatting.transport(service.transport),
        formatting.enabled(service.enabled),
        formatting.state(service.state),
        formatting.latency(service.latency_ms),
        str(service.tools),
        formatting.clock(service.last_check),
        Text(formatting.one_line(service.last_error, 50), style="red") if service.last_error else "",
    )
