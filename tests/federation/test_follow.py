"""A gateway follows another gateway's registry (`/v0.1/servers`): a change there reaches it within one refresh.

The central gateway is a real in-process gateway with real upstreams on loopback; the follower
reads its registry with its own credential (a bearer token of the central gateway) and connects to
the endpoint it publishes. Refreshes are triggered explicitly and the test waits on the pool with a
deadline: nothing depends on the refresh interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.federation.conftest import DEADLINE, offers, serve_follower
from tests.harness import (
    ADMIN,
    MANAGED,
    LiveGateway,
    call_structured,
    serve_upstreams,
    token_for,
    tool_names,
    unchanged,
)
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio


def serve_central(tmp_path: Path, weather_url: str) -> AbstractAsyncContextManager[LiveGateway]:
    """The central gateway: `weather`, `ADMIN_SCOPES`, registrations of loopback URLs allowed."""
    return serve_upstreams(tmp_path / "central", {"weather": weather_url}, scopes=ADMIN_SCOPES, **MANAGED)


@asynccontextmanager
async def central_and_follower(
    tmp_path: Path, weather_url: str, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> AsyncIterator[tuple[LiveGateway, LiveGateway]]:
    """`serve_central`, and a follower of its registry (bearer token of an admin; registry `options`)."""
    monkeypatch.setenv("CENTRAL_TOKEN", token_for("follower", groups=["admins"]))
    async with serve_central(tmp_path, weather_url) as central:
        auth = {"type": "bearer", "token_env": "CENTRAL_TOKEN"}
        registries = {"central": {"url": f"{central.base}/v0.1/servers", "auth": auth, **options}}
        async with serve_follower(tmp_path / "follower", registries=registries, scopes=FOLLOWER_SCOPES) as follower:
            yield central, follower


FOLLOWER_SCOPES = """
group_mappings:
  admins: [registry-admin, everything]
  users: [weather-through-central]
UI-Scopes:
  registry-admin:
    list_service: [all]
    health_check_service: [all]
everything:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
weather-through-central:
- server: central
  methods: [tools/list, tools/call]
  tools: ["weather__*"]
"""
"""The follower's own policy: `users` may call only the weather tools of what it follows from `central`."""


async def test_register_disable_and_remove_at_the_central_registry_reach_the_follower(
    tmp_path: Path, weather_url: str, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepting = {"on_change": "accept", "refresh": 3600}
    async with central_and_follower(tmp_path, weather_url, monkeypatch, **accepting) as (central, follower):
        federation = follower.gateway.federation
        assert federation is not None
        with unchanged(follower.servers_file):
            [status] = await federation.refresh()
            assert status.state == "ok", status.last_error
            await follower.wait_until(offers("central", "weather__get_forecast"), DEADLINE)
            async with follower.member("users") as user:
                assert "central__weather__get_forecast" in await tool_names(user)
                forecast = await user.call_tool("central__weather__get_forecast", {"city": "Paris"})
                assert not forecast.is_error, forecast.content

            async with central.member("admins", path=ADMIN) as admin:
                await call_structured(admin, "register_service", {"service_name": "echo", "url": echo_url})
            await federation.refresh(["central"])
            await follower.wait_until(offers("central", "weather__get_forecast", "echo__echo"), DEADLINE)
            async with follower.member("admins") as admin, follower.member("users") as user:
                assert "central__echo__echo" in await tool_names(admin)
                user_tools = await tool_names(user)
            assert "central__echo__echo" not in user_tools  # the follower's own scopes decide
            assert "central__weather__get_forecast" in user_tools

            async with central.member("admins", path=ADMIN) as admin:
                await call_structured(admin, "toggle_service", {"service_name": "weather", "enabled": False})
            await federation.refresh()
            await follower.wait_until(offers("central", "echo__echo", absent=("weather__get_forecast",)), DEADLINE)

            async with central.member("admins", path=ADMIN) as admin:
                await call_structured(admin, "remove_service", {"service_name": "echo"})
            await federation.refresh()
            # Only the disabled weather is left there: the followed endpoint is disabled here too.
            await follower.wait_until(lambda pool: pool.get("central").state.value == "disabled", DEADLINE)
            async with follower.member("admins") as admin:
                assert not {name for name in await tool_names(admin) if name.startswith("central__")}


async def test_the_follower_lists_followed_servers_with_their_registry(
    tmp_path: Path, weather_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with central_and_follower(tmp_path, weather_url, monkeypatch) as (central, follower):
        assert follower.gateway.federation is not None
        await follower.gateway.federation.refresh()
        await follower.wait_until(offers("central"), DEADLINE)
        async with follower.member("admins", path=ADMIN) as admin:
            listed = await call_structured(admin, "list_registries", {})
            services = await call_structured(admin, "list_services", {})
    [registry] = listed["registries"]
    assert registry["state"] == "ok"
    assert registry["followed"] == [
        {"name": "central", "transport": "streamable-http", "servers": ["io.github.mcp-aggregator/weather"]}
    ]
    assert "CENTRAL_TOKEN" not in str(listed) and "Bearer" not in str(listed)
    [service] = [s for s in services["services"] if s["name"] == "central"]
    assert service["state"] == "healthy"
    assert services["registries"] == [
        {
            "name": "central",
            "url": f"{central.base}/v0.1/servers",
            "state": "ok",
            "last_success": registry["last_success"],
            "last_error": None,
        }
    ]


async def test_a_tool_new_at_the_central_registry_is_held_by_default(
    tmp_path: Path, weather_url: str, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Followed servers are pinned like registered ones: after the first listing, a new tool waits for an operator."""
    async with central_and_follower(tmp_path, weather_url, monkeypatch) as (central, follower):
        assert follower.gateway.federation is not None and follower.gateway.catalog.gate is not None
        await follower.gateway.federation.refresh()
        await follower.wait_until(offers("central", "weather__get_forecast"), DEADLINE)
        async with central.member("admins", path=ADMIN) as admin:
            await call_structured(admin, "register_service", {"service_name": "echo", "url": echo_url})
        await follower.gateway.federation.refresh()
        await follower.wait_until(offers("central", "echo__echo"), DEADLINE)
        async with follower.member("admins") as admin:
            names = await tool_names(admin)
        held = follower.gateway.catalog.gate.held_counts()
    assert "central__weather__get_forecast" in names and "central__echo__echo" not in names
    assert held["central"] >= 1
