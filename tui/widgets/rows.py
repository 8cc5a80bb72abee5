"""A table whose rows are replaced as a whole, and only when they changed (polls repeat themselves)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

Cell = Text | str
Row = tuple[Cell, ...]


def set_columns(table: DataTable[Cell], columns: Sequence[tuple[str | None, str]], rows: Sequence[Row]) -> None:
    """Clear `table` and give it `columns` (key, label) as wide as their label and widest cell in `rows`.

    Explicit widths, because DataTable measures new rows later, on idle, and a frame painted in
    between keeps label-wide columns in its render cache (textual 8.2): the rows look cut off.
    """
    table.clear(columns=True)
    for index, (key, label) in enumerate(columns):
        width = max([cell_len(label), *(_width(row[index]) for row in rows if index < len(row))])
        table.add_column(label, key=key, width=width)


def _width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


class RowsTable(DataTable[Cell]):
    """`show(rows)` redraws only when `rows` differ from what is shown; redrawing every poll costs CPU."""

    def __init__(self, *columns: str, id: str | None = None, cursor: bool = True) -> None:
        super().__init__(id=id, cursor_type="row" if cursor else "none", show_cursor=cursor, zebra_stripes=cursor)
        self._columns = [(None, label) for label in columns]
        self._shown: Sequence[Row] | None = None

    def on_mount(self) -> None:
        set_columns(self, self._columns, ())

    def show(self, rows: Sequence[Row], keys: Sequence[str] | None = None) -> bool:
        """Show `rows` (with row `keys`, if given); whether anything changed."""
        if rows == self._shown:
            return False
        self._shown = rows
        set_columns(self, self._columns, rows)
        for index, row in enumerate(rows):
            self.add_row(*row, key=keys[index] if keys else None)
        return True
