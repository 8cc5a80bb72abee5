"""A 2026-07-28 upstream's list changes reach the gateway through its `subscriptions/listen` stream, including a
change made while that stream was being opened (the stream replays nothing, so the gateway lists again once it
is acknowledged)."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler

from aggregator.registry.models import ServersFile
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import Timings
from tests.harness import serve_asgi

pytestmark = pytest.mark.anyio

QUIET = Timings(connect_timeout=20, health_interval=3600, backoff_initial=0.05, backoff_max=0.5)
"""No health probe within a test: only the listen stream can tell the gateway of a change."""
DEADLINE = 20


def tool(name: str) -> types.Tool:
    return types.Tool(name=name, description=f"The {name} tool.", input_schema={"type": "object"})


class ChangingUpstream:
    """An upstream whose tools change silently (no event published) each time a listen stream opens."""

    def __init__(self) -> None:
        self.tools = [tool("first")]
        self.listens = 0
        self._listen = ListenHandler(InMemorySubscriptionBus())

    async def list_tools(self, ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(self.tools))

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        self.listens += 1
        self.tools.append(tool(f"added_at_listen_{self.listens}"))  # after the gateway's listing, before the ack
        return await self._listen(ctx, params)

    def server(self) -> Server[Any]:
        return Server("changing", on_list_tools=self.list_tools, on_subscriptions_listen=self.listen)


def offers(name: str) -> Any:
    def holds(pool: UpstreamPool) -> bool:
        listing = pool.get("changing").listing
        return listing is not None and name in {t.name for t in listing.tools}

    return holds


async def test_a_change_made_while_the_listen_stream_opens_is_listed_without_waiting_for_a_probe() -> None:
    upstream = ChangingUpstream()
    app = upstream.server().streamable_http_app(host="127.0.0.1")
    async with serve_asgi(app) as url:
        servers = ServersFile.model_validate({"servers": {"changing": {"transport": "streamable-http", "url": url}}})
        async with UpstreamPool(servers, QUIET) as pool:
            with anyio.fail_after(DEADLINE):
                await pool.wait_until(UpstreamPool.all_connected)
                await pool.wait_until(offers("added_at_listen_1"))
    assert upstream.listens == 1
