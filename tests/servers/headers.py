"""A streamable-HTTP upstream whose `whoami` tool reports the HTTP headers the gateway sent it.

Run: `python tests/servers/headers.py --host 127.0.0.1 --port 0` (prints `READY <url>`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.servers._http import main

REPORTED = (
    "authorization",
    "x-user",
    "x-username",
    "x-client-id",
    "x-scopes",
    "x-auth-method",
    "x-server-name",
    "x-tool-name",
    "x-amz-date",
    "x-amz-security-token",
)


def create_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("headers")

    @server.tool()
    def whoami(ctx: Context) -> dict[str, str]:
        """Report the request headers that identify the caller."""
        headers = ctx.headers or {}
        return {name: headers[name] for name in REPORTED if name in headers}

    return server


if __name__ == "__main__":
    main(create_server())
