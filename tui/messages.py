"""What screens and widgets ask the app to do with a server or a tool (messages up); the app does it.

Several places offer the same actions (the servers table, the server screen, the command palette),
so these requests are shared here rather than nested in one widget.
"""

from __future__ import annotations

import mcp_types as types
from textual.message import Message

from tui.models import HeldTool


class ServerRequest(Message):
    """An action on one registered server."""

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server


class OpenServer(ServerRequest):
    """Show the server's screen: its tools, resources and prompts."""


class ToggleServer(ServerRequest):
    """Enable or disable the server."""

    def __init__(self, server: str, enabled: bool) -> None:
        super().__init__(server)
        self.enabled = enabled


class RefreshServer(ServerRequest):
    """Re-list the server's tools, resources and prompts now."""


class RemoveServer(ServerRequest):
    """Remove the server (after the operator confirms)."""


class RegisterServer(Message):
    """Open the registration form."""


class RefreshAll(Message):
    """Refresh every enabled server, showing progress."""


class CancelRefreshAll(Message):
    """Stop a running refresh of all servers."""


class TryTool(Message):
    """Open the form that calls `tool` as the operator and shows its answer."""

    def __init__(self, tool: types.Tool) -> None:
        super().__init__()
        self.tool = tool


class DecideHeld(Message):
    """Approve or reject a held tool definition (after the operator confirms)."""

    def __init__(self, held: HeldTool, approve: bool) -> None:
        super().__init__()
        self.held = held
        self.approve = approve
