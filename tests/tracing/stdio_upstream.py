"""A stdio upstream for the trace tests: its one tool answers with the trace context its request carried.

Run by the gateway as `python -m tests.tracing.stdio_upstream` (cwd: the repository).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer


def create_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("piped")

    @server.tool()
    def seen(ctx: Context) -> dict[str, Any]:
        """The `_meta.traceparent` of this request (None without one)."""
        meta = ctx.request_context.meta or {}
        return {"meta": meta.get("traceparent"), "header": None}

    return server


if __name__ == "__main__":
    create_server().run("stdio")
