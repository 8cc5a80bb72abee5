"""A table whose rows are replaced as a whole, and only when they changed (polls repeat themselves)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = Text | str
Row = tuple[Cell, ...]


class RowsTable(DataTable[Cell]):
    """`show(rows)` redraws only when `rows` differ from what is shown; redrawing every poll costs CPU."""

    def __init__(self, *columns: str, id: str | None = None, cursor: bool = True) -> None:
        super().__init__(id=id, cursor_type="row" if cursor else "none", show_cursor=cursor, zebra_stripes=cursor)
        self._columns = columns
        self._shown: Sequence[Row] | None = None

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    def show(self, rows: Sequence[Row], keys: Sequence[str] | None = None) -> bool:
        """Show `rows` (with row `keys`, if given); whether anything changed."""
        if rows == self._shown:
            return False
        self._shown = rows
        self.clear()
        for index, row in enumerate(rows):
            self.add_row(*row, key=keys[index] if keys else None)
        return True
