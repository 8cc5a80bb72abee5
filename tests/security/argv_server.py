"""A stdio MCP server whose one tool answers with the arguments it was started with.

Stdio template tests start it through the gateway to see exactly which argv a caller's values made.
Run: `python -m tests.security.argv_server [ARGS...]`.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer


def create_server(argv: list[str]) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("argv")

    @server.tool()
    def arguments() -> list[str]:
        """The command-line arguments this server was started with (after the module name)."""
        return argv

    return server


if __name__ == "__main__":
    anyio.run(create_server(sys.argv[1:]).run_stdio_async)
