"""Try a tool: fill its arguments, call it through the gateway as the operator, and read its answer.

The call is a real `tools/call` with the operator's token: the gateway's policy applies, and the
audit log records it (under the console's client name, so it is left out of the statistics).
An error result is shown as the tool's answer, in red, not as a failure of the console.
"""

from __future__ import annotations

import inspect

import mcp_types as types
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.arguments import ArgumentError, Field, fields_of, read_arguments
from tui.errors import ConsoleError
from tui.link import GatewayLink
from tui.models import ToolOutcome


class TryScreen(ModalScreen[None]):
    """The form for one tool and, once called, its answer."""

    DEFAULT_CSS = """
    TryScreen {
        align: center middle;
    }
    TryScreen > VerticalScroll {
        width: 90;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    TryScreen #title {
        text-style: bold;
    }
    TryScreen #about, TryScreen .hint {
        color: $text-muted;
    }
    TryScreen .row {
        height: 1;
        margin-top: 1;
    }
    TryScreen .row Label {
        width: 18;
    }
    TryScreen .row Input {
        width: 1fr;
    }
    TryScreen .hint {
        padding-left: 18;
        height: auto;
    }
    TryScreen #problem {
        color: $error;
        height: auto;
    }
    TryScreen #buttons {
        height: 1;
        margin-top: 1;
        align-horizontal: right;
    }
    TryScreen #buttons Button {
        margin-left: 1;
    }
    TryScreen #outcome {
        height: auto;
        margin-top: 1;
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "call", "Call"),
    ]

    outcome: reactive[ToolOutcome | None] = reactive(None)
    problem: reactive[str] = reactive("")

    def __init__(self, link: GatewayLink, tool: types.Tool) -> None:
        super().__init__()
        self._link = link
        self.tool = tool
        self.fields: tuple[Field, ...] = fields_of(tool.input_schema)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"Try {self.tool.name}", id="title")
            about = inspect.cleandoc(self.tool.description or "").split("\n\n")[0]
            yield Static(about or "(no description)", id="about")
            for index, field in enumerate(self.fields):
                with Horizontal(classes="row"):
                    yield Label(f"{field.name}{' *' if field.required else ''}")
                    yield Input(id=f"argument-{index}", placeholder=field.kind, compact=True)
                yield Static(field.hint, classes="hint")
            if not self.fields:
                yield Static("This tool takes no arguments.", classes="hint")
            yield Static(id="problem")
            with Horizontal(id="buttons"):
                yield Button("Call (ctrl+s)", variant="primary", id="call", action="screen.call", compact=True)
                yield Button("Close (esc)", id="close", action="screen.close", compact=True)
            yield Static(id="outcome")

    def on_mount(self) -> None:
        inputs = self.query(Input)
        (inputs.first() if inputs else self.query_one("#call", Button)).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_call()

    def field_input(self, name: str) -> Input:
        """The text field of the argument `name` (ids are positions: names need not be valid ids)."""
        index = next(index for index, field in enumerate(self.fields) if field.name == name)
        return self.query_one(f"#argument-{index}", Input)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_call(self) -> None:
        values = {field.name: self.field_input(field.name).value for field in self.fields}
        try:
            arguments = read_arguments(self.fields, values)
        except ArgumentError as error:
            self.problem = str(error)
            self.field_input(error.field).focus()
            return
        self.problem = ""
        self._call(arguments)

    @work(exclusive=True, group="try")
    async def _call(self, arguments: dict[str, object]) -> None:
        button = self.query_one("#call", Button)
        button.disabled = True
        try:
            self.outcome = await self._link.gateway.try_tool(self.tool.name, dict(arguments))
        except ConsoleError as error:
            self.problem = f"The call did not go through: {error}"
        finally:
            button.disabled = False

    def watch_problem(self, problem: str) -> None:
        self.query_one("#problem", Static).update(problem)

    def watch_outcome(self, outcome: ToolOutcome | None) -> None:
        if outcome is not None:
            self.query_one("#outcome", Static).update(describe_outcome(outcome))


def describe_outcome(outcome: ToolOutcome) -> RenderableType:
    """The answer as the operator reads it: a heading (red for an error result), the text, the structured content."""
    heading = Text("Error result" if outcome.is_error else "Result", style="bold red" if outcome.is_error else "bold")
    parts: list[RenderableType] = [heading, Text(outcome.text or "(no text)", style="red" if outcome.is_error else "")]
    if outcome.structured is not None:
        parts += [Text("Structured content", style="bold dim")]
        parts += [Syntax(outcome.structured, "json", theme="ansi_dark", background_color="default", word_wrap=True)]
    return Group(*parts)
