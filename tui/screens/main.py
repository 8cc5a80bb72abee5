"""The main screen: connection status, then tabs for servers, tools, activity and held tool definitions."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, TabbedContent, TabPane

from tui.link import GatewayLink, LinkState
from tui.models import Progress, Snapshot
from tui.screens.live import LiveScreen
from tui.widgets.activity import ActivityPane
from tui.widgets.connection import ConnectionBar
from tui.widgets.held import HeldPane
from tui.widgets.server_table import ServersTable
from tui.widgets.servers import ServersPane
from tui.widgets.tools import ToolsPane

FOCUS = {"servers": "#server-list", "activity": "#tail", "held": "#held-list"}
"""What takes the focus when a tab is shown (the search box, for tools)."""


class MainScreen(LiveScreen):
    """Servers, tools, activity and held definitions, one tab each; number keys switch tabs."""

    DEFAULT_CSS = """
    MainScreen TabbedContent, MainScreen ContentSwitcher, MainScreen TabPane {
        height: 1fr;
    }
    MainScreen TabPane {
        padding: 0;
    }
    """

    BINDINGS = [
        Binding("1", "show('servers')", "Servers", show=False),
        Binding("2", "show('tools')", "Tools", show=False),
        Binding("3", "show('activity')", "Activity", show=False),
        Binding("4", "show('held')", "Held", show=False),
        Binding("slash", "search", "Search"),
    ]

    def __init__(
        self, link: GatewayLink, snapshot: Snapshot, link_state: LinkState | None, progress: Progress | None = None
    ) -> None:
        super().__init__(snapshot, link_state, progress)
        self._link = link

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar().data_bind(state=MainScreen.link_state)
        with TabbedContent(initial="servers"):
            with TabPane("Servers [dim]1[/]", id="servers"):
                yield ServersPane().data_bind(MainScreen.snapshot, MainScreen.progress)
            with TabPane("Tools [dim]2[/]", id="tools"):
                yield ToolsPane(self._link).data_bind(MainScreen.snapshot)
            with TabPane("Activity [dim]3[/]", id="activity"):
                yield ActivityPane().data_bind(MainScreen.snapshot)
            with TabPane("Held [dim]4[/]", id="held"):
                yield HeldPane().data_bind(MainScreen.snapshot)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ServersTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys typed into a field are text, never tab switches (`/`, `1`, `3` in the search box)."""
        return not (action in ("show", "search") and isinstance(self.focused, Input))

    def action_show(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "tools":
            self.query_one(ToolsPane).focus_search()
        else:
            self.query_one(FOCUS[tab], DataTable).focus()

    def action_search(self) -> None:
        self.action_show("tools")
