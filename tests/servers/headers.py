"""A streamable-HTTP upstream whose `whoami` tool reports the HTTP headers the gateway sent it.

Run: `python tests/servers/headers.py --host 127.0.0.1 --port 0` (prints `READY <url>`).
In-process, `HeaderRecorder(http_app(create_server(), host=...))` also keeps every request's raw
header lines and JSON-RPC method, to show exactly what reached the upstream (no injected header).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


@dataclass(frozen=True, slots=True)
class Received:
    """One HTTP request as the upstream received it: raw header lines, and its JSON-RPC method if any."""

    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    rpc_method: str | None

    def values(self, name: str) -> list[bytes]:
        """Every value of header `name` (case-insensitive), in the order received."""
        return [value for key, value in self.headers if key.lower() == name.lower().encode()]


class HeaderRecorder:
    """ASGI middleware that records every request it passes on (`received`), then serves it unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received: list[Received] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rpc_method = parsed.get("method") if isinstance(parsed, dict) else None
        headers = tuple((bytes(key), bytes(value)) for key, value in scope["headers"])
        self.received.append(Received(scope["method"], scope["path"], headers, rpc_method))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


if __name__ == "__main__":
    main(create_server())
