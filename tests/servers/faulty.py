"""A fault-injecting upstream: one tool per way an MCP server can misbehave.

Run: `python tests/servers/faulty.py --host 127.0.0.1 --port 0` (streamable HTTP at /mcp and SSE at
/sse; prints `READY <url>`), or `python tests/servers/faulty.py --stdio`.

Tools (every one also announces itself on stderr as `STARTED <tool>`, so tests can wait for a call
to be in flight instead of sleeping):

    echo(text)        answers normally: the control
    slow(seconds)     answers after `seconds`
    hang()            never answers
    crash()           the process exits mid-call (os._exit), no answer
    flood(count)      sends `count` log and `count` progress notifications, then answers
    big(megabytes)    answers with a text block of `megabytes` MiB (`notify`: as an SSE event over HTTP)

Faults below the MCP layer are injected on the wire over HTTP by `WireFaults`, which answers the
POST of these calls itself (over stdio they answer normally):

    garbage_json      a 200 response whose body is not JSON
    garbage_shape     valid JSON-RPC whose result is not a CallToolResult
    close_early       an SSE response that ends before the answer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aggregator.policy.limits import replay_body
from examples.servers._http import _ReadyAnnouncingServer, http_app

WIRE_FAULTS = ("garbage_json", "garbage_shape", "close_early")


def started(tool: str) -> None:
    print(f"STARTED {tool}", file=sys.stderr, flush=True)


def create_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("faulty", instructions="Misbehaves on request, for fault-injection tests.")

    @server.tool()
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    @server.tool()
    async def slow(seconds: Annotated[float, Field(ge=0)]) -> str:
        """Answer after `seconds`."""
        started("slow")
        await anyio.sleep(seconds)
        return f"Waited {seconds:g} s."

    @server.tool()
    async def hang() -> str:
        """Never answer."""
        started("hang")
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    @server.tool()
    def crash() -> str:
        """Exit the whole process in the middle of the call."""
        started("crash")
        os._exit(3)

    @server.tool()
    async def flood(count: Annotated[int, Field(ge=0)], ctx: Context) -> str:
        """Send `count` log notifications and `count` progress notifications, then answer."""
        started("flood")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # logging is deprecated in 2026-07-28, still sent where opted in
            for index in range(count):
                await ctx.log("info", f"flood {index}")
                await ctx.report_progress(index + 1, count)
        return f"Sent {count} notifications of each kind."

    @server.tool()
    async def big(megabytes: Annotated[float, Field(gt=0)], ctx: Context, notify: bool = False) -> str:
        """Answer with `megabytes` MiB of text; with `notify`, log first (over HTTP the answer is then an SSE event)."""
        started("big")
        if notify:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await ctx.log("info", "a big answer follows")
        return "x" * int(megabytes * 1024 * 1024)

    for name in WIRE_FAULTS:
        server.add_tool(_wire_placeholder(name), name=name, description=f"Answered on the wire: {name}.")
    return server


def _wire_placeholder(name: str) -> Callable[[], str]:
    def placeholder() -> str:
        started(name)
        return f"{name} answers normally off HTTP."

    return placeholder


class WireFaults:
    """Answers the HTTP POST of a `tools/call` to a wire fault itself; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        fault, request_id = _wire_fault(body)
        if fault is None:
            await self._app(scope, replay_body(body, receive), send)
            return
        started(fault)
        await _ANSWERS[fault](send, request_id)


def _wire_fault(body: bytes) -> tuple[str | None, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None, None
    name = (message.get("params") or {}).get("name")
    return (name if name in WIRE_FAULTS else None), message.get("id")


async def _respond(send: Send, content_type: bytes, body: bytes, *, more: bool = False) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _garbage_json(send: Send, request_id: Any) -> None:
    await _respond(send, b"application/json", b'{"jsonrpc": "2.0", "id": ' + json.dumps(request_id).encode() + b", {{")


async def _garbage_shape(send: Send, request_id: Any) -> None:
    result = {"content": "not a list", "isError": "sometimes"}
    await _respond(
        send, b"application/json", json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode()
    )


async def _close_early(send: Send, request_id: Any) -> None:
    await _respond(send, b"text/event-stream", b": the answer never comes\n\n", more=True)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


_ANSWERS: dict[str, Callable[[Send, Any], Coroutine[Any, Any, None]]] = {
    "garbage_json": _garbage_json,
    "garbage_shape": _garbage_shape,
    "close_early": _close_early,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python tests/servers/faulty.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stdio", action="store_true", help="serve over stdin/stdout instead of HTTP")
    arguments = parser.parse_args()
    server = create_server()
    if arguments.stdio:
        server.run("stdio")
        return
    app = WireFaults(http_app(server, host=arguments.host))
    config = uvicorn.Config(
        app,
        host=arguments.host,
        port=arguments.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    anyio.run(_ReadyAnnouncingServer(config).serve)


if __name__ == "__main__":
    main()
