"""The status line: whether the console is connected to the gateway, and if not, why and what next.

A refused token (expired or revoked while the console runs) is a banner of its own: reconnecting
cannot fix it, the operator has to start the console with a new token.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.link import LinkState, LinkStatus

TOKEN_VARIABLE = "MCP_AGGREGATOR_TOKEN"


class ConnectionBar(Static):
    """One line: connected (and in which protocol era), connecting, or lost and retrying."""

    DEFAULT_CSS = """
    ConnectionBar {
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    ConnectionBar.-lost {
        background: $error 30%;
    }
    ConnectionBar.-rejected {
        height: auto;
        background: $error 60%;
        text-style: bold;
    }
    """

    state: reactive[LinkState | None] = reactive(None)

    def watch_state(self, state: LinkState | None) -> None:
        self.set_class(state is not None and state.status is LinkStatus.LOST, "-lost")
        self.set_class(state is not None and state.status is LinkStatus.REJECTED, "-rejected")

    def render(self) -> Text:
        state = self.state
        if state is None:
            return Text("Starting…")
        if state.status is LinkStatus.CONNECTED:
            verb = "Reconnected to" if state.reconnected else "Connected to"
            live = " · live" if state.following else ""
            return Text.assemble(("● ", "green"), f"{verb} {state.target}", (f"  {state.detail}{live}", "dim"))
        if state.status is LinkStatus.CONNECTING:
            return Text.assemble(("◌ ", "cyan"), f"Connecting to {state.target}…")
        if state.status is LinkStatus.REJECTED:
            again = f"Start the console with a new token (--token or ${TOKEN_VARIABLE}); "
            again += f"retrying every {state.retry_in:g} s."
            return Text.assemble(("✕ ", "bold"), f"{state.detail[:1].upper()}{state.detail[1:]}. ", again)
        retry = f" Retrying in {state.retry_in:g} s (attempt {state.attempt}); ctrl+r retries now."
        return Text.assemble(("✕ ", "bold red"), f"Gateway unreachable at {state.target}: {state.detail}.", retry)
