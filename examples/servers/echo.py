"""A tiny echo server: the upstream for gateway tests and latency benchmarks.

Its tools are trivially cheap so that a benchmark measures the hop, not the work;
`slow` and `fail` exist to exercise progress, timeouts, cancellation and tool errors.

Run: `python -m examples.servers.echo --host 127.0.0.1 --port 8002`
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from examples.servers._http import main

PROGRESS_INTERVAL = 0.1
"""Seconds between progress notifications from `slow`."""


def create_server() -> MCPServer[Any]:
    """Build the echo server; it keeps no state, so every call is independent."""
    server: MCPServer[Any] = MCPServer(
        "echo",
        title="Echo (test upstream)",
        instructions="Trivial tools for testing and benchmarking MCP plumbing.",
        version="1.0.0",
    )

    @server.tool()
    def echo(text: Annotated[str, Field(description="Text to send back unchanged.")]) -> str:
        """Return the given text unchanged."""
        return text

    @server.tool()
    def add(
        a: Annotated[int, Field(description="First addend.")],
        b: Annotated[int, Field(description="Second addend.")],
    ) -> int:
        """Add two integers and return their sum."""
        return a + b

    @server.tool()
    async def slow(
        seconds: Annotated[float, Field(ge=0, le=300, description="How long to wait, in seconds (0-300).")],
        ctx: Context,
    ) -> str:
        """Wait for the given number of seconds, reporting progress every 0.1 s, then say how long it waited.
        Use it to test timeouts, cancellation and progress notifications."""
        waited = 0.0
        try:
            for step in range(1, math.ceil(seconds / PROGRESS_INTERVAL) + 1):
                target = min(step * PROGRESS_INTERVAL, seconds)
                await anyio.sleep(target - waited)
                waited = target
                await ctx.report_progress(round(waited, 3), seconds, f"Waited {waited:.1f} of {seconds:g} s.")
        except anyio.get_cancelled_exc_class():
            # Tests wait for this line to prove a caller's cancellation reached the upstream.
            print(f"CANCELLED slow after {waited:.1f} s", file=sys.stderr, flush=True)
            raise
        return f"Waited {seconds:g} s."

    @server.tool()
    def fail(message: Annotated[str, Field(description="Error message the failed result should carry.")]) -> str:
        """Always fail: return a tool error result (isError=true) carrying the given message."""
        raise ToolError(message)

    return server


if __name__ == "__main__":
    main(create_server())
