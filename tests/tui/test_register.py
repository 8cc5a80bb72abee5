"""The registration form: local checks on the fields, the gateway's refusal as it is, and a real registration."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from aggregator.registry.models import load_servers
from tests.harness import LiveGateway, connected, tool_names, unchanged
from tests.tui.conftest import Notes, bystander, console, until
from tui.app import OperatorApp
from tui.screens.main import MainScreen
from tui.screens.register import RegisterScreen
from tui.widgets.servers import ServersPane

pytestmark = pytest.mark.anyio


def form(app: OperatorApp) -> RegisterScreen:
    assert isinstance(app.screen, RegisterScreen)
    return app.screen


def error_of(app: OperatorApp, field: str) -> str:
    message = form(app).query_one(f"#{field}-error", Static)
    return str(message.render()) if message.has_class("-shown") else ""


async def test_fields_are_checked_as_typed_and_a_good_server_registers(
    console_gateway: LiveGateway, echo_url: str
) -> None:
    notes = Notes()
    app = console(console_gateway)
    try:
        async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
            pane = app.screen.query_one(ServersPane)
            await until(pilot, lambda: pane.table.row_count >= 2, "the servers")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, RegisterScreen), "the form")

            await pilot.press(*"Bad")
            assert "Use 1-32 characters: a-z, 0-9 and '-'" in error_of(app, "name")
            form(app).query_one("#url", Input).focus()
            await pilot.press(*"ftp://x")
            assert "Use an http:// or https:// URL" in error_of(app, "url")
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, RegisterScreen), "an invalid form is not sent"
            assert form(app).focused is form(app).query_one("#name", Input)

            form(app).query_one("#name", Input).value = ""
            await pilot.press(*"echo2")
            assert error_of(app, "name") == ""
            form(app).query_one("#url", Input).value = echo_url
            await pilot.pause()
            assert error_of(app, "url") == ""
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "the form to close")
            await until(pilot, lambda: notes.has("Registered 'echo2'"), "the notification")
            await until(pilot, lambda: "echo2" in {s.name for s in app.snapshot.services}, "echo2 in the table")
        await console_gateway.wait_until(connected("echo2"))
        async with bystander(console_gateway) as other:
            assert "echo2__echo" in await tool_names(other)
    finally:
        if "echo2" in load_servers(console_gateway.servers_file).servers:
            async with bystander(console_gateway) as other:
                await other.call_tool("remove_service", {"service_name": "echo2"})


async def test_the_gateways_refusal_is_shown_on_the_form(console_gateway: LiveGateway, echo_url: str) -> None:
    with unchanged(console_gateway.servers_file):
        app = console(console_gateway)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: bool(app.snapshot.services), "the servers")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, RegisterScreen), "the form")
            form(app).query_one("#name", Input).value = "weather"
            form(app).query_one("#url", Input).value = echo_url
            await pilot.press("ctrl+s")
            refusal = form(app).query_one("#refusal", Static)
            await until(pilot, lambda: "already registered" in str(refusal.render()), "the gateway's refusal")
            assert str(refusal.render()) == "The gateway refused: A server named 'weather' is already registered."
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
