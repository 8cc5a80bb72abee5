"""One tool in full: its exported name, description and input schema."""

from __future__ import annotations

import inspect
import json

import mcp_types as types
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static


def describe_tool(tool: types.Tool | None) -> RenderableType:
    if tool is None:
        return Text("Select a tool to see its description and input schema.", style="dim")
    schema = json.dumps(tool.input_schema, indent=2, sort_keys=True)
    return Group(
        Text(tool.name, style="bold"),
        Text(inspect.cleandoc(tool.description or "(no description)")),
        Text(""),
        Text("Input schema", style="bold dim"),
        Syntax(schema, "json", theme="ansi_dark", background_color="default", word_wrap=True),
    )


class ToolDetail(VerticalScroll):
    """Scrollable view of the tool in `tool`."""

    DEFAULT_CSS = """
    ToolDetail {
        border-left: vkey $foreground 20%;
        padding: 0 1;
    }
    """

    tool: reactive[types.Tool | None] = reactive(None)

    def compose(self) -> ComposeResult:
        yield Static(describe_tool(None))

    def watch_tool(self, tool: types.Tool | None) -> None:
        self.query_one(Static).update(describe_tool(tool))
        self.scroll_home(animate=False)
