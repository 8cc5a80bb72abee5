"""The operator console: a Textual app that is an MCP client of the gateway's admin tools.

The app owns the `GatewayLink` (run in a worker: connect, poll, reconnect) and hands what it
learns down to the live screens as attributes. Widgets and screens ask for changes with messages
(`tui.messages`); the app runs each one in a worker against the gateway, reports the outcome, and
polls at once so the tables show the gateway's new state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from tui.client import GatewayClient
from tui.commands import ServerCommands
from tui.errors import ConsoleError, Refused
from tui.link import Backoff, GatewayLink, LinkState, LinkStatus
from tui.messages import (
    CancelRefreshAll,
    DecideHeld,
    OpenServer,
    RefreshAll,
    RefreshServer,
    RegisterServer,
    RemoveServer,
    ToggleServer,
    TryTool,
)
from tui.models import Filter, Progress, Snapshot
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.live import LiveScreen
from tui.screens.main import MainScreen
from tui.screens.register import RegisterScreen
from tui.screens.try_tool import TryScreen
from tui.target import Target
from tui.widgets.servers import ServersPane

REFRESH_CONCURRENCY = 4
THEMES = ("textual-dark", "textual-light")


class OperatorApp(App[None]):
    """Servers, tools and activity of one gateway, as the operator's token may see and change them."""

    TITLE = "MCP Aggregator"
    SUB_TITLE = "operator console"
    BINDINGS = [
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("q", "quit", "Quit", show=False),
    ]
    COMMANDS = App.COMMANDS | {ServerCommands}

    snapshot: reactive[Snapshot] = reactive(Snapshot)
    link_state: reactive[LinkState | None] = reactive(None)
    progress: reactive[Progress | None] = reactive(None)

    def __init__(self, target: Target, *, interval: float = 3.0, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.link = GatewayLink(target, self._link_changed, self._polled, interval, backoff)

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.link, self.snapshot, self.link_state, self.progress)

    def on_mount(self) -> None:
        self._keep_connected()

    @work(exclusive=True, group="link")
    async def _keep_connected(self) -> None:
        await self.link.run()

    # state, handed down

    def _link_changed(self, state: LinkState) -> None:
        was = self.link_state.status if self.link_state is not None else None
        self.link_state = state
        if state.status is not LinkStatus.CONNECTED:
            self.snapshot = self.snapshot.unknown()  # the gateway may have changed since
        if state.status is was:
            return
        if state.status is LinkStatus.REJECTED:
            self.notify(f"{state.detail}.", title="Token refused", severity="error", timeout=30)
        elif state.status is LinkStatus.LOST and was is LinkStatus.CONNECTED:
            self.notify(f"Lost the gateway: {state.detail}. Reconnecting…", severity="warning")
        elif state.status is LinkStatus.CONNECTED and state.reconnected:
            self.notify("Reconnected to the gateway.")

    def _polled(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def watch_snapshot(self, snapshot: Snapshot) -> None:
        self._hand_down("snapshot", snapshot)

    def watch_link_state(self, state: LinkState | None) -> None:
        self._hand_down("link_state", state)

    def watch_progress(self, progress: Progress | None) -> None:
        self._hand_down("progress", progress)

    def _hand_down(self, attribute: str, value: object) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, LiveScreen):
                setattr(screen, attribute, value)

    def show_filter(self, which: Filter) -> None:
        """Show the servers tab with `which` servers."""
        while isinstance(self.screen, DetailScreen):
            self.pop_screen()
        main = next(screen for screen in self.screen_stack if isinstance(screen, MainScreen))
        main.query_one(ServersPane).filter = which
        main.action_show("servers")

    # requests, run against the gateway

    def on_open_server(self, request: OpenServer) -> None:
        self.push_screen(DetailScreen(request.server, self.link, self.snapshot, self.link_state))

    def on_toggle_server(self, request: ToggleServer) -> None:
        done = f"{'Enabled' if request.enabled else 'Disabled'} '{request.server}'."
        self._change(request.server, done, lambda gateway: gateway.toggle(request.server, request.enabled))

    def on_refresh_server(self, request: RefreshServer) -> None:
        self._change(request.server, f"Refreshed '{request.server}'.", lambda gateway: gateway.refresh(request.server))

    def on_remove_server(self, request: RemoveServer) -> None:
        name = request.server

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._change(name, f"Removed '{name}'.", lambda gateway: gateway.remove(name))
                if isinstance(self.screen, DetailScreen) and self.screen.server == name:
                    self.pop_screen()

        question = f"Remove the server '{name}' from the gateway? Its tools disappear for every caller."
        self.push_screen(ConfirmScreen(question), answered)

    def on_decide_held(self, request: DecideHeld) -> None:
        held, approve = request.held, request.approve

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                done = f"{'Approved' if approve else 'Rejected'} {held.key}."
                self._change(held.server, done, lambda gateway: gateway.decide(held, approve))

        if approve:
            question = f"Approve {held.key} ({held.change})? It is pinned and served to callers at once."
        else:
            question = f"Reject {held.key} ({held.change})? It stays out of every list and call until it changes."
        self.push_screen(ConfirmScreen(question), answered)

    def on_try_tool(self, request: TryTool) -> None:
        self.push_screen(TryScreen(self.link, request.tool))

    def on_register_server(self, request: RegisterServer) -> None:
        def registered(name: str | None) -> None:
            if name:
                self.notify(f"Registered '{name}'; it connects in the background.")
                self.link.poll_now()

        self.push_screen(RegisterScreen(self.link), registered)

    def _change(self, server: str, done: str, change: Callable[[GatewayClient], Awaitable[object]]) -> None:
        """Run `change` in a worker; a newer change of the same server replaces a pending one."""

        async def run() -> None:
            try:
                await change(self.link.gateway)
            except ConsoleError as error:
                title = "The gateway refused" if isinstance(error, Refused) else "Gateway unreachable"
                self.notify(str(error), title=title, severity="error")
            else:
                self.notify(done)
            self.link.poll_now()

        self.run_worker(run(), group=f"server:{server}", exclusive=True)

    def on_refresh_all(self, request: RefreshAll) -> None:
        self._refresh_all()

    def on_cancel_refresh_all(self, request: CancelRefreshAll) -> None:
        self.workers.cancel_group(self, "refresh-all")
        self.progress = None
        self.notify("Stopped refreshing.")

    @work(exclusive=True, group="refresh-all")
    async def _refresh_all(self) -> None:
        """Refresh every enabled server, a few at a time; the UI stays live and shows progress."""
        names = [service.name for service in self.snapshot.services if service.enabled]
        failures: list[str] = []
        done = 0
        limit = anyio.CapacityLimiter(REFRESH_CONCURRENCY)
        self.progress = Progress(0, len(names))

        async def refresh(name: str) -> None:
            nonlocal done
            async with limit:
                self.progress = Progress(done, len(names), name)
                try:
                    await self.link.gateway.refresh(name)
                except ConsoleError as error:
                    failures.append(f"{name}: {error}")
                done += 1
                self.progress = Progress(done, len(names), name)

        try:
            async with anyio.create_task_group() as group:
                for name in names:
                    group.start_soon(refresh, name)
        finally:
            self.progress = None
        if failures:
            self.notify("\n".join(failures), title="Some servers did not refresh", severity="error")
        else:
            self.notify(f"Refreshed {len(names)} servers.")
        self.link.poll_now()

    # global actions

    def action_reload(self) -> None:
        self.link.poll_now()

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]
