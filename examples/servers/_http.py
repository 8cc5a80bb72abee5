"""Serve an `MCPServer` over streamable HTTP and legacy HTTP+SSE from one process.

The demo upstreams (`weather`, `echo`) share this command line::

    python -m examples.servers.<name> --host 127.0.0.1 --port N

Streamable HTTP is served at `/mcp` (both protocol eras: 2025-11-25 sessions and
2026-07-28 stateless requests) and the legacy HTTP+SSE transport at `/sse`, with its
POST endpoint at `/messages/`. Once the socket is listening, exactly one line
`READY http://HOST:PORT/mcp` is written to stdout, so a test or a supervisor can wait
for that event instead of sleeping. `--port 0` binds a free port and the READY line
names the port actually bound.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

STREAMABLE_HTTP_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGE_PATH = "/messages/"


def http_app(server: MCPServer[Any], *, host: str) -> Starlette:
    """Return one Starlette app serving `server` at `/mcp` (streamable HTTP) and `/sse` (legacy SSE).

    `host` is the bind address; for loopback binds the SDK turns on DNS-rebinding
    protection on both transports. The streamable-HTTP session manager must run for
    the app's lifetime, so it becomes the combined app's only lifespan; the SSE
    transport needs none (each SSE connection runs the server for its own duration).
    """
    streamable = server.streamable_http_app(streamable_http_path=STREAMABLE_HTTP_PATH, host=host)
    sse = server.sse_app(sse_path=SSE_PATH, message_path=SSE_MESSAGE_PATH, host=host)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return Starlette(routes=[*streamable.routes, *sse.routes], lifespan=lifespan)


class _ReadyAnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the READY line once its sockets are listening."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        bound_host, bound_port = self.servers[0].sockets[0].getsockname()[:2]
        netloc_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"READY http://{netloc_host}:{bound_port}{STREAMABLE_HTTP_PATH}", flush=True)


def _parse_arguments(server: MCPServer[Any], argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m examples.servers.{server.name}",
        description=f"Run the '{server.name}' demo MCP server over streamable HTTP ({STREAMABLE_HTTP_PATH}) "
        f"and legacy SSE ({SSE_PATH}).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to bind; 0 picks a free one")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level, written to stderr (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(server: MCPServer[Any], argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve `server` until SIGINT or SIGTERM."""
    arguments = _parse_arguments(server, argv)
    config = uvicorn.Config(
        http_app(server, host=arguments.host),
        host=arguments.host,
        port=arguments.port,
        log_level=arguments.log_level,
        # Access logs go to stdout, which is reserved for the READY line; a reader
        # that stops draining the pipe must not be able to stall the server.
        access_log=False,
        # Open SSE streams would otherwise hold a graceful shutdown open indefinitely.
        timeout_graceful_shutdown=2,
    )
    anyio.run(_ReadyAnnouncingServer(config).serve)
