"""The lean transport to a stdio upstream: JSON-RPC lines on the shared pipe, with ids of its own.

The SDK's stdio transport owns the child's pipes: one writer task frames each message as a JSON
line on stdin, one reader task parses stdout lines. `LeanPipe.tapped` sits between that
transport and the SDK client: lean requests are written on the same write stream (so lines never
interleave), under ids from `lean.FIRST_ID` up that the SDK's counter never reaches, and the
answers to those ids are taken off the read stream before the SDK client's dispatcher sees them.
Everything else (the SDK's own answers, notifications, the upstream's requests) passes through
untouched and is handled exactly as today.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from aggregator.sdk import TransportStreams
from aggregator.upstreams.caller import Caller

_Answer = types.JSONRPCResponse | types.JSONRPCError


class LeanPipe:
    """Lean requests on one stdio upstream's shared pipe (see the module docstring)."""

    def __init__(self) -> None:
        self._write: Any = None
        self._waiting: dict[Any, MemoryObjectSendStream[_Answer]] = {}

    @asynccontextmanager
    async def tapped(self, transport: AbstractAsyncContextManager[TransportStreams]) -> AsyncIterator[TransportStreams]:
        """`transport`'s streams, its read stream filtered of the lean requests' answers."""
        async with transport as (read, write):
            self._write = write
            try:
                yield cast(TransportStreams, (_Filtered(read, self), write))
            finally:
                self._write = None
                self._close_waiters()

    def divert(self, item: Any) -> bool:
        """Hand `item` to the lean request waiting for it; whether it was one."""
        message = item.message if isinstance(item, SessionMessage) else None
        if not isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            return False
        waiter = self._waiting.get(message.id)
        if waiter is None:
            return False
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            waiter.send_nowait(message)
        return True

    def _close_waiters(self) -> None:
        for waiter in self._waiting.values():
            waiter.close()

    async def exchange(self, message: dict[str, Any], headers: dict[str, str], caller: Caller) -> dict[str, Any]:
        """Write one request line; the answer the upstream writes back for its id."""
        write = self._write
        if write is None:
            raise MCPError(types.CONNECTION_CLOSED, "Connection closed")
        request = types.JSONRPCRequest.model_validate(message, by_name=False)
        send, receive = anyio.create_memory_object_stream[_Answer](1)
        self._waiting[request.id] = send
        try:
            with receive:
                await write.send(SessionMessage(request))
                answer = await receive.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise MCPError(types.CONNECTION_CLOSED, "Connection closed") from None
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self._cancel(request.id)
            raise
        finally:
            self._waiting.pop(request.id, None)
            send.close()
        dumped: dict[str, Any] = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped

    async def _cancel(self, request_id: Any) -> None:
        """Tell the upstream the request is abandoned, as the SDK's dispatcher does."""
        write = self._write
        if write is None:
            return
        notice = types.JSONRPCNotification(
            jsonrpc="2.0", method="notifications/cancelled", params={"requestId": request_id}
        )
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await write.send(SessionMessage(notice))


class _Filtered:
    """The SDK client's view of the read stream: everything except the lean requests' answers."""

    def __init__(self, inner: Any, pipe: LeanPipe) -> None:
        self._inner = inner
        self._pipe = pipe

    async def receive(self) -> Any:
        while True:
            item = await self._inner.receive()
            if not self._pipe.divert(item):
                return item

    def __aiter__(self) -> _Filtered:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Filtered:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
