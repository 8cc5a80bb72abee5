"""The kill test's upstream: `echo`, and `hold`, a call that notes which replica runs it and waits to be released.

Each replica's servers.yaml sends this upstream `X-Replica: <index>` (a static header). `hold(label)` notes
(label, index) in `Holding.calls` as it starts, reports `replica <index>` as its first progress
notification (when the caller asked for progress), waits until the test sets `Holding.released`, and
answers `released on replica <index>`. So the test learns where nginx sent each call, and how many
times each call reached the upstream, without routing anything itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from tests.harness import serve_mcp

REPLICA_HEADER = "X-Replica"


class Holding:
    """The calls `hold` has seen, in order of arrival, and the event that releases them all."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        """(label, replica index) of every `hold` call that reached the upstream."""
        self.released = anyio.Event()
        self._arrived = anyio.Event()

    def arrived(self, label: str, replica: int) -> None:
        self.calls.append((label, replica))
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(self, count: int) -> None:
        """Return once `count` calls have reached the upstream (the caller bounds the wait)."""
        while len(self.calls) < count:
            await self._arrived.wait()

    def replicas_of(self, label: str) -> list[int]:
        """Where each call labelled `label` ran: one replica, unless a call was sent again."""
        return [replica for seen, replica in self.calls if seen == label]


def create_server(holding: Holding) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("echo")

    @server.tool()
    def echo(text: Annotated[str, Field(description="Text to send back unchanged.")]) -> str:
        """Return the given text unchanged."""
        return text

    @server.tool()
    async def hold(
        label: Annotated[str, Field(description="Names the call in the test's notes.")], ctx: Context
    ) -> str:
        """Note the call and its replica, report `replica <index>` as progress, answer once released."""
        replica = int((ctx.headers or {}).get(REPLICA_HEADER, "-1"))
        holding.arrived(label, replica)
        await ctx.report_progress(0, None, f"replica {replica}")
        await holding.released.wait()
        return f"released on replica {replica}"

    return server


@asynccontextmanager
async def holding_upstream() -> AsyncIterator[tuple[str, Holding]]:
    """The upstream, in-process on a loopback port: its /mcp URL, and its notes of the held calls."""
    holding = Holding()
    async with serve_mcp(create_server(holding)) as url:
        yield url, holding
