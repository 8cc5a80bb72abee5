"""The servers tab: the filter bar, the servers table, progress of long operations, and what is not allowed."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Label, ProgressBar, Static

from tui.messages import (
    CancelRefreshAll,
    OpenServer,
    RefreshAll,
    RefreshServer,
    RegisterServer,
    RemoveServer,
    ToggleServer,
)
from tui.models import REFRESH, REGISTER, REMOVE, TOGGLE, Filter, Progress, Snapshot
from tui.widgets.filter_bar import FilterBar
from tui.widgets.server_table import ServersTable, Sort

SORT_CYCLE = ("name", "state", "latency", "tools", "checked")
ACTION_TOOLS = {
    "toggle_server": TOGGLE,
    "refresh": REFRESH,
    "refresh_all": REFRESH,
    "remove": REMOVE,
    "register": REGISTER,
}
ACTION_LABELS = {TOGGLE: "enable/disable", REFRESH: "refresh", REMOVE: "remove", REGISTER: "register"}


class ServersPane(Vertical):
    """The servers tab. Actions the token may not take are shown disabled, and the note says why."""

    DEFAULT_CSS = """
    ServersPane > ServersTable {
        height: 1fr;
    }
    ServersPane #progress {
        height: 1;
        display: none;
    }
    ServersPane #progress.-running {
        display: block;
    }
    ServersPane #progress Label {
        width: 1fr;
    }
    ServersPane #note {
        height: auto;
        max-height: 3;
        color: $text-muted;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("t", "toggle_server", "On/off"),
        Binding("r", "refresh", "Refresh"),
        Binding("R", "refresh_all", "Refresh all"),
        Binding("n", "register", "New"),
        Binding("d,delete", "remove", "Remove"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("escape", "cancel_refresh", "Stop refresh"),
    ]

    snapshot: reactive[Snapshot] = reactive(Snapshot, bindings=True)
    progress: reactive[Progress | None] = reactive(None, bindings=True)
    filter: reactive[Filter] = reactive(Filter.ALL)
    order: reactive[Sort] = reactive(("name", False))

    def compose(self) -> ComposeResult:
        yield FilterBar().data_bind(current=ServersPane.filter, order=ServersPane.order)
        yield ServersTable(id="server-list").data_bind(ServersPane.filter, ServersPane.order)
        with Horizontal(id="progress"):
            yield Label(id="progress-label")
            yield ProgressBar(show_eta=False)
        yield Static(id="note")

    @property
    def table(self) -> ServersTable:
        return self.query_one(ServersTable)

    def watch_snapshot(self, snapshot: Snapshot) -> None:
        services = snapshot.services
        self.query_one(FilterBar).counts = tuple(sum(s.matches(f) for s in services) for f in Filter)
        self.table.services = services
        self.query_one("#note", Static).update(self._note(snapshot))

    def watch_progress(self, progress: Progress | None) -> None:
        self.query_one("#progress").set_class(progress is not None, "-running")
        if progress is not None:
            self.query_one(ProgressBar).update(total=progress.total, progress=progress.done)
            doing = f": {progress.current}" if progress.current else ""
            self.query_one("#progress-label", Label).update(
                f"Refreshing {progress.done}/{progress.total}{doing} (esc stops)"
            )

    def _note(self, snapshot: Snapshot) -> str:
        lines = []
        if snapshot.registry_error:
            lines.append(f"[red]servers.yaml: {snapshot.registry_error}[/]")
        denied = [label for tool, label in ACTION_LABELS.items() if not snapshot.abilities.allows(tool)]
        if denied and snapshot.abilities.tools:
            tools = ", ".join(tool for tool in ACTION_LABELS if not snapshot.abilities.allows(tool))
            lines.append(f"Not allowed for this token: {', '.join(denied)} ({tools} not in its tools/list).")
        return "\n".join(lines)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_refresh":
            return self.progress is not None
        tool = ACTION_TOOLS.get(action)
        if tool is None:
            return True
        if not self.snapshot.abilities.allows(tool):
            return None
        if action in ("toggle_server", "refresh", "remove") and self.table.selected is None:
            return None
        return True

    @on(FilterBar.Chosen)
    def _chosen(self, event: FilterBar.Chosen) -> None:
        self.filter = event.which

    @on(ServersTable.OrderChosen)
    def _ordered(self, event: ServersTable.OrderChosen) -> None:
        self.order = event.order

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenServer(str(event.row_key.value)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.refresh_bindings()

    def action_cycle_filter(self) -> None:
        members = list(Filter)
        self.filter = members[(members.index(self.filter) + 1) % len(members)]

    def action_cycle_sort(self) -> None:
        column = self.order[0]
        following = SORT_CYCLE[(SORT_CYCLE.index(column) + 1) % len(SORT_CYCLE)] if column in SORT_CYCLE else "name"
        self.order = (following, False)

    def action_toggle_server(self) -> None:
        if (service := self.table.selected) is not None:
            self.post_message(ToggleServer(service.name, not service.enabled))

    def action_refresh(self) -> None:
        if (service := self.table.selected) is not None:
            self.post_message(RefreshServer(service.name))

    def action_remove(self) -> None:
        if (service := self.table.selected) is not None:
            self.post_message(RemoveServer(service.name))

    def action_register(self) -> None:
        self.post_message(RegisterServer())

    def action_refresh_all(self) -> None:
        self.post_message(RefreshAll())

    def action_cancel_refresh(self) -> None:
        self.post_message(CancelRefreshAll())
