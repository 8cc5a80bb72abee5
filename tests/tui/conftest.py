"""A secured in-process gateway with real demo upstreams for the console tests, and helpers to drive the console."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from mcp import Client
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from tests.harness import ADMIN, MANAGED, LiveGateway, member_token, serve_upstreams
from tests.policies import CONSOLE_SCOPES
from tui.app import OperatorApp
from tui.link import Backoff
from tui.target import HttpTarget

POLL_INTERVAL = 1.0
"""Changes made through the console poll at once; this only bounds how long outside changes take to show."""
DEADLINE = 20.0


@pytest.fixture(scope="package")
async def console_gateway(
    tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    """weather and echo (real HTTP upstreams) behind an in-process gateway that verifies tokens against
    `CONSOLE_SCOPES`."""
    upstreams = {"weather": weather_url, "echo": echo_url}
    async with serve_upstreams(tmp_path_factory.mktemp("console"), upstreams, scopes=CONSOLE_SCOPES, **MANAGED) as live:
        yield live


def console(live: LiveGateway, group: str = "admins", interval: float = POLL_INTERVAL) -> OperatorApp:
    """The console as a member of `group` would start it (subject `user-<group>`), polling often so tests
    need not wait long."""
    target = HttpTarget(live.admin_url, member_token([group]))
    return OperatorApp(target, interval=interval, backoff=Backoff(0.1, 0.3))


def bystander(live: LiveGateway, group: str = "admins") -> AbstractAsyncContextManager[Client]:
    """A separate MCP client of the gateway's management endpoint, to check what the console did (or to act
    beside it); it caches nothing, so it sees every change."""
    return live.member(group, path=ADMIN, cache=None)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `deadline` seconds."""
    with anyio.move_on_after(deadline):
        while not condition():
            await pilot.pause(0.05)
        return
    raise AssertionError(f"gave up after {deadline} s waiting for {what}")


class Notes:
    """Every notification the app shows (pass as `run_test(message_hook=...)`)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.seen.append(f"{message.notification.title}: {message.notification.message}")

    def has(self, text: str) -> bool:
        return any(text in note for note in self.seen)
