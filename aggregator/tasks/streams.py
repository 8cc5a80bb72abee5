"""Long calls of 2025-11-25 sessions (served no tasks) outlive their connection too: resumable streams (SEP-1699).

A 2025-11-25 caller's `tools/call` is answered on the SSE stream of its POST. The gateway numbers that
stream's events and keeps them per session (`aggregator.server.events`), so the caller can reconnect
with `Last-Event-ID` and get what it missed. With `tasks.stream_hold` set, the gateway does not hold
such a stream open longer than that: once the call has run `stream_hold` seconds it closes the stream
(through the SDK's `close_sse_stream` on the request context); the call goes on, and its answer is
delivered on the stream the caller resumes. 0: every answer comes on a resumed stream (pure polling).
This keeps long calls alive through proxies that cut idle or long responses.

The SDK offers the close only where a caller can resume (2025-11-25 or later, an event store, SSE
responses); everywhere else the call is answered as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import HandlerResult, ServerRequestContext

Context = ServerRequestContext[Any, Any]
ToolCall = Callable[[Context, types.CallToolRequestParams], Awaitable[HandlerResult]]


def holding_streams(inner: ToolCall, seconds: float | None) -> ToolCall:
    """`inner`, closing the caller's resumable stream once the call has run `seconds` (None: never)."""
    if seconds is None:
        return inner

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> HandlerResult:
        close = ctx.close_sse_stream
        if close is None:
            return await inner(ctx, params)
        if seconds == 0:
            # Closed once the answer is ready, not before: the stream's priming event (the id the caller
            # resumes from) is sent while the call runs, and a stream closed before it could not be resumed.
            result = await inner(ctx, params)
            await close()
            return result
        async with anyio.create_task_group() as group:

            async def close_when_held_too_long() -> None:
                await anyio.sleep(seconds)
                await close()

            group.start_soon(close_when_held_too_long)
            try:
                result = await inner(ctx, params)
            finally:
                group.cancel_scope.cancel()
        return result

    return call_tool
