"""One server: its state, its actions, and the tools, resources and prompts it exports."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widgets import Button, DataTable, Footer, Header, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from tui import formatting
from tui.errors import ConsoleError
from tui.link import GatewayLink, LinkState
from tui.messages import RefreshServer, RemoveServer, ToggleServer, TryTool
from tui.models import REFRESH, REMOVE, TOGGLE, ServerContents, Service, Snapshot
from tui.screens.live import LiveScreen
from tui.widgets.connection import ConnectionBar
from tui.widgets.tool_detail import ToolDetail

BUTTONS = {"toggle_server": TOGGLE, "refresh": REFRESH, "remove": REMOVE}


class DetailScreen(LiveScreen):
    """The server named `server`; its lists are loaded when shown and when its listing changes."""

    DEFAULT_CSS = """
    DetailScreen #summary, DetailScreen #reasons {
        height: auto;
        padding: 0 1;
    }
    DetailScreen #reasons {
        color: $text-muted;
    }
    DetailScreen #last-error-box {
        height: auto;
        max-height: 8;
        padding: 0 1;
        display: none;
    }
    DetailScreen #last-error-box.-shown {
        display: block;
    }
    DetailScreen #last-error {
        color: $error;
    }
    DetailScreen #actions {
        height: 1;
        padding: 0 1;
    }
    DetailScreen #actions Button {
        margin-right: 1;
    }
    DetailScreen #tool-list {
        width: 32;
        height: 1fr;
    }
    DetailScreen TabbedContent, DetailScreen ContentSwitcher, DetailScreen TabPane {
        height: 1fr;
    }
    DetailScreen TabPane {
        padding: 0;
    }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("t", "toggle_server", "On/off"),
        Binding("r", "refresh", "Refresh"),
        Binding("d,delete", "remove", "Remove"),
    ]

    contents: reactive[ServerContents | None] = reactive(None)

    def __init__(self, server: str, link: GatewayLink, snapshot: Snapshot, link_state: LinkState | None) -> None:
        super().__init__(snapshot, link_state)
        self.server = server
        self._link = link
        self._listed: tuple[int, int, int] | None = None

    @property
    def service(self) -> Service | None:
        return next((s for s in self.snapshot.services if s.name == self.server), None)

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar().data_bind(state=DetailScreen.link_state)
        yield Static(id="summary")
        with VerticalScroll(id="last-error-box"):
            yield Static(id="last-error")
            yield Static(id="stderr")
        with Horizontal(id="actions"):
            yield Button("Disable", id="toggle_server", action="screen.toggle_server", compact=True)
            yield Button("Refresh", id="refresh", action="screen.refresh", compact=True)
            yield Button("Remove", id="remove", variant="error", action="screen.remove", compact=True)
        yield Static(id="reasons")
        with TabbedContent(initial="tools-tab"):
            with TabPane("Tools", id="tools-tab"), Horizontal():
                yield OptionList(id="tool-list")
                yield ToolDetail()
            with TabPane("Resources", id="resources-tab"):
                yield DataTable[str](id="resources", cursor_type="row")
            with TabPane("Prompts", id="prompts-tab"):
                yield DataTable[str](id="prompts", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = f"Server {self.server}"
        resources = self.query_one("#resources", DataTable)
        for label in ("URI", "Name", "Type"):
            resources.add_column(label)
        prompts = self.query_one("#prompts", DataTable)
        for label in ("Prompt", "Arguments", "Description"):
            prompts.add_column(label)
        self.query_one("#tool-list", OptionList).focus()
        self._show(self.snapshot)  # set before mounting, so its watcher has not run

    def watch_snapshot(self, snapshot: Snapshot) -> None:
        self._show(snapshot)

    def _show(self, snapshot: Snapshot) -> None:
        service = self.service
        summary = self.query_one("#summary", Static)
        if service is None:
            summary.update(Text(f"'{self.server}' is no longer registered (or not visible to this token).", "red"))
            for button in self.query(Button):
                button.disabled = True
            return
        summary.update(_summary(service))
        self._show_last_error(service.last_error, service.recent_stderr)
        reasons = []
        for button_id, tool in BUTTONS.items():
            button = self.query_one(f"#{button_id}", Button)
            reason = snapshot.abilities.reason(tool)
            button.disabled = reason is not None
            button.tooltip = reason
            if reason is not None:
                reasons.append(f"{button.label}: {reason}")
        self.query_one("#toggle_server", Button).label = "Disable" if service.enabled else "Enable"
        self.query_one("#reasons", Static).update("\n".join(reasons))
        listed = (service.tools, service.resources, service.prompts)
        if listed != self._listed:
            self._listed = listed
            self.load()

    def _show_last_error(self, error: str | None, stderr: tuple[str, ...]) -> None:
        """The whole of `last_error` (it may carry the command, its exit status and its last stderr lines),
        and what a stdio server said on stderr lately, healthy or not."""
        self.query_one("#last-error-box").set_class(bool(error or stderr), "-shown")
        self.query_one("#last-error", Static).update(Text(f"Last error:\n{error}" if error else ""))
        self.query_one("#last-error", Static).display = bool(error)
        recent = self.query_one("#stderr", Static)
        recent.update(Text("Recent stderr:\n" + "\n".join(stderr), "dim") if stderr else "")
        recent.display = bool(stderr)

    @work(exclusive=True, group="contents")
    async def load(self) -> None:
        """(Re)load the server's tools, resources and prompts from the gateway."""
        try:
            self.contents = await self._link.gateway.contents(self.server)
        except ConsoleError as error:
            self.notify(str(error), title="Could not list the server's contents", severity="error")

    def watch_contents(self, contents: ServerContents | None) -> None:
        if contents is None:
            return
        try:
            tabs = self.query_one(TabbedContent)
            tools_tab = tabs.get_tab("tools-tab")
        except NoMatches:  # the answer came while the console was closing: its tabs are already gone
            return
        tools_tab.label = f"Tools ({len(contents.tools)})"
        tabs.get_tab("resources-tab").label = f"Resources ({len(contents.resources) + len(contents.templates)})"
        tabs.get_tab("prompts-tab").label = f"Prompts ({len(contents.prompts)})"
        options = self.query_one("#tool-list", OptionList)
        options.clear_options()
        options.add_options(Option(tool.name.removeprefix(f"{self.server}__"), id=tool.name) for tool in contents.tools)
        if contents.tools:
            options.highlighted = 0
        self.query_one(ToolDetail).tool = contents.tools[0] if contents.tools else None
        resources = self.query_one("#resources", DataTable)
        resources.clear()
        for resource in contents.resources:
            resources.add_row(str(resource.uri), resource.name, resource.mime_type or "")
        for template in contents.templates:
            resources.add_row(template.uri_template, template.name, "template")
        prompts = self.query_one("#prompts", DataTable)
        prompts.clear()
        for prompt in contents.prompts:
            arguments = ", ".join(argument.name for argument in prompt.arguments or ())
            prompts.add_row(prompt.name, arguments, formatting.one_line(prompt.description, 50))

    @on(OptionList.OptionHighlighted, "#tool-list")
    def _show_tool(self, event: OptionList.OptionHighlighted) -> None:
        if self.contents is not None:
            chosen = event.option.id
            self.query_one(ToolDetail).tool = next((t for t in self.contents.tools if t.name == chosen), None)

    @on(OptionList.OptionSelected, "#tool-list")
    def _try_tool(self, event: OptionList.OptionSelected) -> None:
        chosen = next((t for t in self.contents.tools if t.name == event.option.id), None) if self.contents else None
        if chosen is not None:
            self.post_message(TryTool(chosen))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tool = BUTTONS.get(action)
        if tool is None:
            return True
        return None if self.service is None or not self.snapshot.abilities.allows(tool) else True

    def action_back(self) -> None:
        self.dismiss()

    def action_toggle_server(self) -> None:
        if (service := self.service) is not None:
            self.post_message(ToggleServer(service.name, not service.enabled))

    def action_refresh(self) -> None:
        self.post_message(RefreshServer(self.server))

    def action_remove(self) -> None:
        self.post_message(RemoveServer(self.server))


def _summary(service: Service) -> Text:
    parts: list[str | tuple[str, str] | Text] = [
        (service.name, "bold"),
        f" · {service.transport} · ",
        formatting.state(service.state),
        f" · {service.era or 'no session'} · latency {formatting.latency(service.latency_ms)}",
        f" · checked {formatting.clock(service.last_check)}",
    ]
    if service.description:
        parts.append(f"\n{formatting.one_line(service.description, 76)}")
    return Text.assemble(*parts)
