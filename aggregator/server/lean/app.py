"""`LeanApp`: the ASGI app on /mcp that serves what it can lean and hands the rest to the SDK's app.

A POST's body is read once (the limits middleware in front has already bounded and checked it);
if `Admission` admits it, the lean path answers, else the SDK's app gets the request untouched,
its body replayed. The answer is `application/json` (every caller the lean path serves accepts
it) with the SDK's framing and statuses: a 2026-07-28 error carries the HTTP status the SDK's
table gives its code, a 2025-11-25 answer the session's `Mcp-Session-Id`. An upstream log message
for a 2025-11-25 caller turns the answer into an SSE stream at once, as the SDK path streams it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import anyio
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.streamable_http import REQUEST_CANCELLED
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import ErrorData, JSONRPCError
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.policy.limits import replay_body
from aggregator.sdk import ResultShaper
from aggregator.server.handlers import GatewayServer
from aggregator.server.lean.admission import Admission, LeanRequest
from aggregator.server.lean.calls import LeanCalls
from aggregator.server.lean.decisions import DecisionCache
from aggregator.server.lean.sessions import LegacyConnections
from aggregator.upstreams.caller import Caller, current_caller

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
Response = dict[str, Any]
"""A JSON-RPC response, as the dict the SDK's `JSONRPCResponse` dumps to."""

_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]


class LeanApp:
    """Serves admitted `tools/call` and `tools/list` POSTs; passes everything else to `sdk_app`."""

    def __init__(self, sdk_app: ASGIApp, admission: Admission, calls: LeanCalls) -> None:
        self._sdk_app = sdk_app
        self._admission = admission
        self._calls = calls
        self.served = 0
        """Requests the lean path answered (tests and benchmarks read it)."""
        self.passed = 0
        """POSTs handed to the SDK's app."""
        self._in_flight: dict[tuple[str, int | str], anyio.CancelScope] = {}
        """2025-11-25 lean requests being served, by (session, request id): a caller cancels them by notification."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._sdk_app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return
        request = await self._admission.admit(scope, body)
        if request is None:
            self.passed += 1
            if b"notifications/cancelled" in body:
                self._cancel(scope, body)
            await self._sdk_app(scope, replay_body(body, receive), send)
            return
        self.served += 1
        await self._serve(request, receive, send)

    async def _serve(self, request: LeanRequest, receive: Receive, send: Send) -> None:
        answer = _Answer(request, send)
        reset = current_caller.set(Caller(_context(request, answer)))
        try:
            with request.session.held() if request.session is not None else nullcontext():
                if request.modern:
                    message = await _until_disconnected(receive, self._answer(request))
                    if message is None:
                        return  # the caller closed its stream: the call was cancelled, as on the SDK path
                else:
                    message = await self._cancellable(request)
        finally:
            current_caller.reset(reset)
        await answer.finish(message)

    async def _cancellable(self, request: LeanRequest) -> Response | JSONRPCError:
        """A 2025-11-25 request, which its caller may cancel with `notifications/cancelled` meanwhile.

        The SDK path then cancels the handler and answers `Request cancelled` (its
        `REQUEST_CANCELLED`); so does this.
        """
        assert request.session_id is not None
        key = (request.session_id, request.id)
        with anyio.CancelScope() as scope:
            self._in_flight[key] = scope
            try:
                return await self._answer(request)
            finally:
                if self._in_flight.get(key) is scope:
                    del self._in_flight[key]
        cancelled = ErrorData(code=REQUEST_CANCELLED, message="Request cancelled")
        return JSONRPCError(jsonrpc="2.0", id=request.id, error=cancelled)

    def _cancel(self, scope: Scope, body: bytes) -> None:
        """Cancel the lean request a 2025-11-25 caller's `notifications/cancelled` names (the SDK acknowledges it)."""
        session = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"mcp-session-id"), None)
        try:
            message = json.loads(body)
        except ValueError:
            return
        params = message.get("params") if isinstance(message, dict) else None
        if session is None or not isinstance(params, dict) or message.get("method") != "notifications/cancelled":
            return
        request_id = params.get("requestId")
        if isinstance(request_id, int | str) and (cancel := self._in_flight.get((session, request_id))) is not None:
            cancel.cancel()

    async def _answer(self, request: LeanRequest) -> Response | JSONRPCError:
        legacy = None if request.modern else request.connection
        try:
            if request.params is not None:
                result = await self._calls.call_tool(request.params, request.version, legacy)
            else:
                result = await self._calls.list_tools(request.version, legacy, request.http)
        except MCPError as error:
            return JSONRPCError(jsonrpc="2.0", id=request.id, error=error.error)
        return {"jsonrpc": "2.0", "id": request.id, "result": result}


def _context(request: LeanRequest, answer: _Answer) -> ServerRequestContext[Any, Any]:
    """The SDK's request context for `request`, as its kernel builds one, its stream being `answer`.

    Handlers' helpers (`Caller`: client name, capabilities, questions, log relay) read it exactly
    as on the SDK path; what they send on the request's stream lands in `answer`.
    """
    meta = request.meta
    outbound = _Stream(request, answer)
    session = ServerSession(outbound, request.connection, request_meta=meta)
    return ServerRequestContext(
        session=session,
        lifespan_context=None,
        protocol_version=request.version,
        method=request.method,
        params=request.raw_params,
        request_id=request.id,
        meta=meta,
        request=request.http,
    )


class _Stream:
    """The request-scoped channel of a lean request (the SDK's `DispatchContext` protocol).

    Notifications go to the caller on the answer's stream; a server-to-client request cannot be
    sent (the lean path serves only callers that can be asked nothing), as on a JSON answer.
    """

    def __init__(self, request: LeanRequest, answer: _Answer) -> None:
        self._answer = answer
        self.request_id: int | str | None = request.id
        self.transport = TransportContext(kind="streamable-http", can_send_request=False, headers=request.http.headers)
        self.message_metadata = ServerMessageMetadata(request_context=request.http)
        self._cancel_requested: anyio.Event | None = None
        self.can_send_request = False

    @property
    def cancel_requested(self) -> anyio.Event:
        """Never set (the request is cancelled through its cancel scope), made when first read: most never are."""
        if self._cancel_requested is None:
            self._cancel_requested = anyio.Event()
        return self._cancel_requested

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self._answer.event(json.dumps(message, separators=(",", ":"), ensure_ascii=False))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return  # the lean path serves no request that asked for progress


class _Answer:
    """The HTTP answer to one lean request: JSON, or an SSE stream once a notification must go first."""

    def __init__(self, request: LeanRequest, send: Send) -> None:
        self._request = request
        self._send = send
        self._streaming = False
        self._session_header = [(b"mcp-session-id", request.session_id.encode())] if request.session_id else []

    async def finish(self, message: Response | JSONRPCError) -> None:
        """Send the response: the last SSE event, or the whole JSON body."""
        if isinstance(message, dict):
            # The JSON of the SDK's `JSONRPCResponse` in either era: every field set, none None, and
            # neither `exclude_none` nor `exclude_unset` reaches into the result's values.
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        elif self._request.modern:
            text = json.dumps(message.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))
        else:
            text = message.model_dump_json(by_alias=True, exclude_unset=True)
        if self._streaming:
            await self.event(text, more=False)
            return
        status = 200
        if self._request.modern and isinstance(message, JSONRPCError):
            status = ERROR_CODE_HTTP_STATUS.get(message.error.code, 200)
        body = text.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self._send({"type": "http.response.start", "status": status, "headers": headers + self._session_header})
        await self._send({"type": "http.response.body", "body": body})

    async def event(self, data: str, *, more: bool = True) -> None:
        """One SSE `message` event (the first one commits the answer to a stream)."""
        if not self._streaming:
            self._streaming = True
            start = {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + self._session_header}
            await self._send(start)
        frame = f"event: message\r\ndata: {data}\r\n\r\n".encode()
        await self._send({"type": "http.response.body", "body": frame, "more_body": more})


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, and whether the client went away while it was read."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _until_disconnected(receive: Receive, work: Awaitable[_T]) -> _T | None:
    """Await `work`; None if the client disconnects first (the work is then cancelled, as the SDK does).

    The watcher is a bare asyncio task owned by this function (cancelled on the way out, whatever
    happens), not an anyio task group: per request that costs ~30 us instead of ~150 us (measured
    on uvloop), and the server running this app is always asyncio's (uvicorn).
    """
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            return await work
        finally:
            watcher.cancel()
    return None


def lean_app(
    sdk_app: ASGIApp,
    handlers: GatewayServer,
    server: Server[Any],
    manager: StreamableHTTPSessionManager,
    security: TransportSecuritySettings | None,
    revocations: Path | None,
) -> LeanApp:
    """The lean path in front of `sdk_app` (the SDK's streamable-HTTP app of `manager` serving `server`)."""
    connections = LegacyConnections()
    server.middleware.append(connections)
    admission = Admission(handlers, server, manager, connections, security)
    calls = LeanCalls(handlers, DecisionCache(handlers.guard.policy, revocations), ResultShaper(server))
    return LeanApp(sdk_app, admission, calls)
