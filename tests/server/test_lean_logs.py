"""The lean path asks an upstream for logs only where they can reach the caller.

A 2025-11-25 session takes every log message its level lets through, so its calls ask the upstream
for all of them; a 2026-07-28 caller on the lean path asked for none (one that opts in is served by
the SDK path), so its calls ask for none, and the upstream neither produces nor streams them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import LOG_LEVEL_META_KEY

from tests.harness import serve_gateway, serve_mcp, text_of

pytestmark = pytest.mark.anyio


def recording_upstream() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("recording")

    @server.tool()
    def log_level(ctx: Context) -> str:
        """The log level this request asked for in `_meta` ("none" when it asked for none)."""
        return str(dict(ctx.request_context.meta or {}).get(LOG_LEVEL_META_KEY, "none"))

    return server


@pytest.mark.parametrize(("mode", "asked"), [("auto", "none"), ("legacy", "debug")])
async def test_a_call_asks_the_upstream_for_logs_only_when_the_caller_takes_them(
    tmp_path: Path, mode: str, asked: str
) -> None:
    async with serve_mcp(recording_upstream()) as url:
        servers = {"recording": {"transport": "streamable-http", "url": url}}
        async with (
            serve_gateway(tmp_path, servers=servers, secured=False) as live,
            Client(live.url, mode=mode) as client,
        ):
            answers = [text_of(await client.call_tool("recording__log_level", {})) for _ in range(2)]
    assert answers == [asked, asked]  # a session's first call may take the SDK path, which asks alike
