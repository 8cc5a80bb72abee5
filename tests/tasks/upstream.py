"""A real upstream whose `slow` tool runs until the test releases it, and tells the test what happened to it.

Every call of `slow` names a `label`; the test waits on `started[label]` (the call reached the
upstream), sets `release[label]` to let it finish, and waits on `cancelled[label]` to see that a
cancellation reached the upstream. Nothing here sleeps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.harness import serve_mcp


class Signals:
    """Events per label, created on first use by either side."""

    def __init__(self) -> None:
        self.started: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.release: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.cancelled: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)


def build_server(signals: Signals) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("gated", version="1.0.0")

    @server.tool()
    async def slow(label: str) -> str:
        """Run until the test releases `label`."""
        signals.started[label].set()
        try:
            await signals.release[label].wait()
        except anyio.get_cancelled_exc_class():
            signals.cancelled[label].set()
            raise
        return f"done {label}"

    @server.tool()
    async def confirm(label: str, ctx: Context) -> Any:
        """Ask the caller (a multi round-trip question) whether to go on, then say what it answered."""
        response = (ctx.input_responses or {}).get("go-on")
        if not isinstance(response, types.ElicitResult):
            schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
            question = types.ElicitRequestFormParams(message=f"Go on with {label}?", requested_schema=schema)
            return types.InputRequiredResult(input_requests={"go-on": types.ElicitRequest(params=question)})
        return f"{label}: {response.action} {(response.content or {}).get('ok')}"

    @server.tool()
    def echo(text: str) -> str:
        """Return `text` at once."""
        return text

    @server.tool()
    def fail(message: str) -> str:
        """Always a tool error (isError: true)."""
        raise ToolError(message)

    @server.tool()
    def big(size: int) -> str:
        """A text of `size` bytes."""
        return "x" * size

    return server


@asynccontextmanager
async def serve_gated() -> AsyncIterator[tuple[str, Signals]]:
    """Serve the gated upstream in-process; yield its /mcp URL and its signals."""
    signals = Signals()
    async with serve_mcp(build_server(signals)) as url:
        yield url, signals
