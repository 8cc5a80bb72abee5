"""The console against a real in-process gateway: it follows `gateway://health` instead of polling,
shows a refused token as a banner, the whole last error of a server, a try-it form for any tool,
registers stdio servers from the operator's templates, and its own calls stay out of the activity
statistics. (test_connection.py: rows say "unknown" while the gateway is away.)
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from textual.widgets import Input, Static

from aggregator.policy.revocation import RevocationList
from aggregator.policy.vending import mint_token
from aggregator.registry.models import StdioUpstream, load_servers
from tests.harness import (
    AUTH,
    ERAS,
    KID,
    SECRET,
    Era,
    LiveGateway,
    call_structured,
    serve_gateway,
)
from tests.policies import CONSOLE_SCOPES
from tests.tui.conftest import Notes, until
from tui.app import OperatorApp
from tui.link import Backoff, LinkStatus
from tui.messages import OpenServer
from tui.models import UNKNOWN
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.screens.register import RegisterScreen
from tui.screens.try_tool import TryScreen
from tui.target import HttpTarget
from tui.widgets.connection import ConnectionBar
from tui.widgets.tools import ToolsPane

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]
QUIET = 3600.0
"""A poll interval no test waits for: what changes must come from the gateway's notifications."""
FAILING = [sys.executable, "-c", "import sys; sys.stderr.write('boot failed: no such folder /srv/x\\n'); sys.exit(3)"]
TEMPLATES: dict[str, Any] = {
    "notes": {"command": sys.executable, "args": ["-m", "examples.servers.notes"], "cwd": str(REPOSITORY)},
}


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str) -> AsyncIterator[LiveGateway]:
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url},
        "echo": {"transport": "streamable-http", "url": echo_url},
        "broken": {"transport": "stdio", "command": FAILING[0], "args": FAILING[1:]},
    }
    async with serve_gateway(
        tmp_path_factory.mktemp("console-live"),
        servers=servers,
        scopes=CONSOLE_SCOPES,
        stdio_templates=TEMPLATES,
        backoff_initial=30.0,
        backoff_max=60.0,
    ) as gateway:
        yield gateway


def token(group: str = "admins", expires_in: int = 600) -> str:
    """A token for a member of `group` that expires `expires_in` seconds from now (the gateway allows 30 s skew)."""
    _, claims = mint_token(AUTH, f"{group}-user", [], 600, groups=[group])
    claims["exp"] = int(time.time()) + expires_in
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": KID})


def console(live: LiveGateway, era: Era = "auto", *, bearer: str | None = None, interval: float = QUIET) -> OperatorApp:
    target = HttpTarget(live.admin_url, bearer or token(), mode=era)
    return OperatorApp(target, interval=interval, backoff=Backoff(0.1, 0.3))


def state_of(app: OperatorApp, name: str) -> str | None:
    return next((service.state for service in app.snapshot.services if service.name == name), None)


@pytest.mark.parametrize("era", ERAS)
async def test_changes_arrive_by_notification_not_by_polling(live: LiveGateway, era: Era) -> None:
    app = console(live, era)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.link_state is not None and app.link_state.following, "the health subscription")
        assert "· live" in str(app.screen.query_one(ConnectionBar).render())
        await until(pilot, lambda: state_of(app, "echo") == "healthy", "echo healthy")
        async with live.admin(era) as other:
            await call_structured(other, "toggle_service", {"service_name": "echo", "enabled": False})
            try:
                await until(pilot, lambda: state_of(app, "echo") == "disabled", "the change, announced by the gateway")
            finally:
                await call_structured(other, "toggle_service", {"service_name": "echo", "enabled": True})
        await until(pilot, lambda: state_of(app, "echo") == "healthy", "echo back, announced")


async def test_a_server_that_fails_shows_its_whole_last_error(live: LiveGateway) -> None:
    app = console(live)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: state_of(app, "broken") == "unhealthy", "the failing server")
        service = next(service for service in app.snapshot.services if service.name == "broken")
        assert service.last_error
        app.post_message(OpenServer("broken"))
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the server's screen")
        shown = str(app.screen.query_one("#last-error", Static).render())
        assert shown == f"Last error:\n{service.last_error}"


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_a_token_refused_while_running_shows_a_banner(live: LiveGateway, how: str) -> None:
    notes = Notes()
    bearer = token(expires_in=-25 if how == "expired" else 600)  # valid for ~5 s more (30 s of skew allowed)
    app = console(live, bearer=bearer, interval=0.2)
    async with app.run_test(size=(80, 24), message_hook=notes) as pilot:
        await until(pilot, lambda: bool(app.snapshot.services), "the first poll")
        if how == "revoked":
            jti = jwt.decode(bearer, options={"verify_signature": False})["jti"]
            RevocationList(live.gateway.settings.data_dir / "revoked.json").revoke(jti)
        await until(pilot, lambda: app.link_state is not None and app.link_state.status is LinkStatus.REJECTED, how)
        bar = app.screen.query_one(ConnectionBar)
        reason = "has been revoked" if how == "revoked" else "has expired"
        assert str(bar.render()).startswith("✕ The gateway rejected the token: token ")
        assert reason in str(bar.render()) and "Start the console with a new token" in str(bar.render())
        assert bar.has_class("-rejected")
        await until(pilot, lambda: notes.has("Token refused"), "the notification")  # a message, handled after the state
        assert {service.state for service in app.snapshot.services} == {UNKNOWN}
        assert app.is_running


async def test_try_it_calls_a_tool_as_the_operator_and_shows_the_answer(live: LiveGateway) -> None:
    app = console(live)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: any(t.name == "weather__get_forecast" for t in app.snapshot.tools), "the tools")
        await pilot.press("2", *"get_forecast")
        pane = app.screen.query_one(ToolsPane)
        await until(pilot, lambda: pane.result is not None and pane.result.query == "get_forecast", "the search")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, TryScreen), "the try-it form")
        form = app.screen
        assert isinstance(form, TryScreen) and pane.result is not None
        assert form.tool.name == pane.result.matches[0].name
        await pilot.press("ctrl+s")
        assert str(form.query_one("#problem", Static).render()) == "city: required."
        form.field_input("city").value = "Paris"
        if any(field.name == "days" for field in form.fields):
            form.field_input("days").value = "two"
            await pilot.press("ctrl+s")
            assert str(form.query_one("#problem", Static).render()) == "days: not a whole number: 'two'."
            form.field_input("days").value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: form.outcome is not None, "the answer")
        assert form.outcome is not None and not form.outcome.is_error and "Paris" in form.outcome.text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_the_consoles_own_calls_are_left_out_of_the_statistics(tmp_path: Path, weather_url: str) -> None:
    weather = {"transport": "streamable-http", "url": weather_url}
    async with serve_gateway(tmp_path, servers={"weather": weather}, scopes=CONSOLE_SCOPES) as live:
        await counted_alone(live)


async def counted_alone(live: LiveGateway) -> None:
    """The console polls a lot; one call by someone else is all the statistics count."""
    app = console(live, interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snapshot.activity is not None, "the activity")
        polls = 0

        def polled_again() -> bool:
            nonlocal polls
            polls += 1
            return polls > 20

        await until(pilot, polled_again, "some polling")
        async with live.client("bystander", groups=["operators"]) as other:
            await other.call_tool("weather__get_forecast", {"city": "Paris"})
        await until(
            pilot,
            lambda: app.snapshot.activity is not None and app.snapshot.activity.total.calls >= 1,
            "the bystander's call in the numbers",
        )
        activity = app.snapshot.activity
        assert activity is not None
        entries = [entry for entry in activity.entries if entry.method == "tools/call"]
        ours = [entry for entry in entries if entry.client.startswith("mcp-aggregator-tui/")]
        assert ours, "the audit log records the console's calls with its client name"
        assert dict(activity.upstreams).keys() == {"weather"}, "no mcpgw: the console's admin calls are left out"
        assert activity.total.calls == 1


@pytest.mark.parametrize(
    ("template", "values", "outcome"),
    [
        ("notes", "", "registered"),
        ("shell", "", "There is no stdio template 'shell'; offered: notes."),
        ("notes", "x=1", "slot"),
    ],
)
async def test_the_stdio_form_registers_an_operator_template(
    live: LiveGateway, template: str, values: str, outcome: str
) -> None:
    name = f"from-{template}"
    app = console(live)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: bool(app.snapshot.services), "the servers")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, RegisterScreen), "the form")
            form = app.screen
            form.query_one("#name", Input).value = name
            form.query_one("#transport").value = "stdio"  # type: ignore[attr-defined]
            await pilot.pause()
            assert not form.query_one("#url-row").display and form.query_one("#template-row").display
            form.query_one("#template", Input).value = template
            form.query_one("#values", Input).value = values
            await pilot.press("ctrl+s")
            if outcome == "registered":
                await until(pilot, lambda: isinstance(app.screen, MainScreen), "the form to close")
                entry = load_servers(live.servers_file).servers[name]
                assert isinstance(entry, StdioUpstream) and entry.command == sys.executable
                assert entry.registered_by == "admins-user"
            else:
                refusal = form.query_one("#refusal", Static)
                await until(pilot, lambda: outcome in str(refusal.render()), "the gateway's refusal")
    finally:
        if name in load_servers(live.servers_file).servers:
            async with live.admin() as other:
                await call_structured(other, "remove_service", {"service_name": name})


TALKING = (
    "import sys\nsys.path.insert(0, {root!r})\n"
    "print('cache warm: 812 entries', file=sys.stderr)\nprint('listening on stdio', file=sys.stderr, flush=True)\n"
    "from examples.servers.echo import create_server\ncreate_server().run('stdio')\n"
)


async def test_a_servers_screen_shows_what_a_running_stdio_server_said_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "talking.py").write_text(TALKING.format(root=str(REPOSITORY)))
    servers = {"talking": {"transport": "stdio", "command": "python", "args": ["talking.py"]}}
    async with serve_gateway(tmp_path, servers=servers, scopes=CONSOLE_SCOPES) as live:
        await live.log.wait_for(re.compile(r"upstream\.stderr .*listening on stdio"))
        app = console(live)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: state_of(app, "talking") == "healthy", "the stdio server")
            app.post_message(OpenServer("talking"))
            await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the server's screen")
            shown = app.screen.query_one("#stderr", Static)
            assert shown.display and not app.screen.query_one("#last-error", Static).display
            assert str(shown.render()) == "Recent stderr:\ncache warm: 812 entries\nlistening on stdio"
