"""Command palette entries for the servers the console knows, and for its global actions.

Actions the token may not take stay listed, with the reason as their help text; choosing one
says why instead of failing at the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message

from tui.messages import OpenServer, RefreshAll, RefreshServer, RegisterServer, RemoveServer, ToggleServer
from tui.models import REFRESH, REGISTER, REMOVE, TOGGLE, Filter

if TYPE_CHECKING:
    from tui.app import OperatorApp

Command = tuple[str, str, Callable[[], None]]


class ServerCommands(Provider):
    """Open, enable/disable, refresh and remove each server; register; refresh all; filter; reload."""

    def _commands(self) -> list[Command]:
        app = cast("OperatorApp", self.app)
        abilities = app.snapshot.abilities

        def request(tool: str | None, message: Message, help: str) -> tuple[str, Callable[[], None]]:
            reason = abilities.reason(tool) if tool else None
            if reason is not None:
                return f"Not allowed: {reason}", lambda: app.notify(reason, severity="warning")

            def post() -> None:
                app.post_message(message)

            return help, post

        commands: list[Command] = [
            ("Register a server…", *request(REGISTER, RegisterServer(), "Open the registration form")),
            ("Refresh all servers", *request(REFRESH, RefreshAll(), "Re-list every enabled server, with progress")),
            ("Reload now", "Poll the gateway now (or reconnect at once)", app.action_reload),
        ]
        for which in Filter:
            commands.append((f"Show servers: {which.value}", "Filter the servers table", _filter(app, which)))
        for service in app.snapshot.services:
            name = service.name
            verb = "Disable" if service.enabled else "Enable"
            commands += [
                (f"Open server {name}", *request(None, OpenServer(name), "Its tools, resources and prompts")),
                (f"{verb} server {name}", *request(TOGGLE, ToggleServer(name, not service.enabled), f"{verb} it")),
                (f"Refresh server {name}", *request(REFRESH, RefreshServer(name), "Re-list it now")),
                (f"Remove server {name}…", *request(REMOVE, RemoveServer(name), "Asks for confirmation first")),
            ]
        return commands

    async def discover(self) -> Hits:
        for text, help, callback in self._commands():
            yield DiscoveryHit(text, callback, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help, callback in self._commands():
            if (score := matcher.match(text)) > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help)


def _filter(app: OperatorApp, which: Filter) -> Callable[[], None]:
    return lambda: app.show_filter(which)
