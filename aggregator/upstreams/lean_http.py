"""The lean transport to a streamable-HTTP upstream: kept-alive HTTP/1.1 POSTs on the shared session.

The client is `lean_wire` (httptools), chosen by measurement (`bench/lean_clients.py`: a fifth
of aiohttp's CPU per exchange, a twentieth of httpx2's). Each request is one POST carrying the
headers the SDK client's transport sends
(`Accept`, `Content-Type`, `MCP-Protocol-Version`, the session's `Mcp-Session-Id` for a
2025-11-25 upstream), the upstream's configured headers, and whatever its `httpx2.Auth` adds
(credentials, identity headers: the same auth object, driven here). The answer is read as the
SDK's transport reads it (`_handle_post_request`): a JSON body, or an SSE stream whose
notifications and requests are handled on the way to the response, and every way it can go
wrong becomes the same `MCPError` the SDK synthesises.

`SessionTap` sits on the SDK client's HTTP requests and notes the session id the upstream hands
out, so lean requests join the very session the SDK client opened.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from aggregator.upstreams.caller import Caller
from aggregator.upstreams.lean import QUESTIONS, NotSent
from aggregator.upstreams.lean_wire import PayloadError, WirePool, WireResponse

_SESSION_HEADER = "mcp-session-id"
_KEEPALIVE = 4.0  # below uvicorn's 5 s, so a kept-alive connection is not reused just as the server drops it
_READ_TIMEOUT = 300.0  # as the SDK transport's: requests have their own deadlines

Notify = Callable[[types.ServerNotification], Awaitable[None]]


class SessionTap(httpx2.Auth):
    """Wraps the upstream's auth (or none) on the SDK client; remembers the session id it is given."""

    def __init__(self, inner: httpx2.Auth | None) -> None:
        self.inner = inner
        self.session_id: str | None = None
        self.requires_request_body = bool(inner and inner.requires_request_body)

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self.inner is None:
            self._saw((yield request))
            return
        flow = self.inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            self._saw(response)
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return

    def _saw(self, response: httpx2.Response) -> None:
        if session_id := response.headers.get(_SESSION_HEADER):
            self.session_id = session_id


class LeanHttp:
    """POSTs JSON-RPC requests to one upstream URL over a kept-alive connection pool."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        tap: SessionTap,
        connect_timeout: float,
        max_event_bytes: int,
        notify: Notify,
    ) -> None:
        self._url = url
        self._headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        self._headers.update(headers)
        self._tap = tap
        self._max_event_bytes = max_event_bytes
        self._notify = notify
        self._pool = WirePool(url, connect_timeout, _READ_TIMEOUT, _KEEPALIVE)

    async def aclose(self) -> None:
        """Close the idle connections (the upstream disconnected or the gateway stops)."""
        await self._pool.aclose()

    async def exchange(self, message: dict[str, Any], headers: dict[str, str], caller: Caller) -> dict[str, Any]:
        """POST one request; the JSON-RPC response or error that answers it."""
        body = json.dumps(message, separators=(",", ":")).encode()
        request_id = message["id"]
        modern = "mcp-method" in headers
        try:
            async with self._post(body, headers) as response:
                return await self._answer(response, request_id, caller)
        except BaseException:
            if not modern and self._tap.session_id is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await self._cancel(request_id)
            raise

    async def _answer(self, response: WireResponse, request_id: Any, caller: Caller) -> dict[str, Any]:
        if response.status == 202:
            raise MCPError(types.INVALID_REQUEST, "server answered a request with 202 Accepted")
        content_type = response.headers.get("content-type", "").lower()
        if response.status >= 400:
            raise await self._refusal(response, content_type)
        if 300 <= response.status < 400:
            raise MCPError(types.INVALID_REQUEST, f"not following a redirect to {response.headers.get('location')}")
        if content_type.startswith("application/json"):
            try:
                return _response_message(json.loads(await response.read()))
            except (ValueError, PayloadError) as error:
                raise MCPError(types.PARSE_ERROR, f"Failed to parse JSON response: {error}") from None
        if content_type.startswith("text/event-stream"):
            return await self._stream(response, request_id, caller)
        raise MCPError(types.INVALID_REQUEST, f"Unexpected content type: {content_type}")

    async def _refusal(self, response: WireResponse, content_type: str) -> MCPError:
        """The error the SDK transport reports for a 4xx/5xx answer."""
        if content_type.startswith("application/json"):
            try:
                message = json.loads(await response.read())
                if isinstance(message, dict) and isinstance(message.get("error"), dict):
                    return MCPError.from_error_data(types.ErrorData.model_validate(message["error"], by_name=False))
            except (ValueError, ValidationError, PayloadError):
                pass
        if response.status == 404:
            if self._tap.session_id is None:
                return MCPError(types.METHOD_NOT_FOUND, "Not Found")
            return MCPError(types.INVALID_REQUEST, "Session terminated")
        return MCPError(types.INTERNAL_ERROR, "Server returned an error response")

    async def _stream(self, response: WireResponse, request_id: Any, caller: Caller) -> dict[str, Any]:
        """Read SSE events until the response; relay or answer what comes before it."""
        try:
            async for data in _events(response.iter_any(), self._max_event_bytes):
                try:
                    message = json.loads(data)
                except ValueError:
                    raise MCPError(types.CONNECTION_CLOSED, "SSE stream failed: an event is not JSON") from None
                if not isinstance(message, dict):
                    continue
                if "method" not in message:
                    return _response_message(message)
                if "id" in message:
                    await self._reply(message, caller)
                else:
                    await self._notification(message, caller)
        except PayloadError:
            pass
        raise MCPError(types.CONNECTION_CLOSED, "SSE stream ended without a response")

    async def _notification(self, message: dict[str, Any], caller: Caller) -> None:
        """Logs go to the caller (filtered as today); progress was not asked for; the rest to the lifecycle."""
        try:
            notification = types.server_notification_adapter.validate_python(message, by_name=False)
        except ValidationError:
            return
        if isinstance(notification, types.LoggingMessageNotification):
            await caller.log(notification.params)
        elif not isinstance(notification, types.ProgressNotification):
            await self._notify(notification)

    async def _reply(self, request: dict[str, Any], caller: Caller) -> None:
        """Answer an upstream's request mid-call as the SDK client's relay does (`Caller.ask`, a ping itself)."""
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        method = request.get("method")
        answer: Any
        if method == "ping":
            answer = types.EmptyResult()
        elif method in QUESTIONS:
            try:
                question = types.server_request_adapter.validate_python(request, by_name=False)
            except ValidationError:
                answer = types.ErrorData(code=types.INVALID_PARAMS, message="Invalid request parameters")
            else:
                answer = await caller.ask(question)  # type: ignore[arg-type]
        else:
            answer = types.ErrorData(code=types.METHOD_NOT_FOUND, message="Method not found")
        key = "error" if isinstance(answer, types.ErrorData) else "result"
        reply[key] = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        await self._send_plain(reply)

    async def _cancel(self, request_id: Any) -> None:
        """Tell a 2025-11-25 upstream that a request is abandoned (a 2026-07-28 one sees its POST closed)."""
        notice = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        with contextlib.suppress(PayloadError, OSError, NotSent):
            await self._send_plain(notice)

    async def _send_plain(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        async with self._post(body, {}) as response:
            await response.read()

    def _post(self, body: bytes, headers: dict[str, str]) -> _Post:
        merged = {**self._headers, **headers}
        if self._tap.session_id is not None:
            merged[_SESSION_HEADER] = self._tap.session_id
        return _Post(self._pool, self._url, body, merged, self._tap.inner)


class _Post:
    """One POST, with the upstream's `httpx2.Auth` flow driven around it (a 401 may be retried once)."""

    def __init__(
        self, pool: WirePool, url: str, body: bytes, headers: dict[str, str], auth: httpx2.Auth | None
    ) -> None:
        self._pool, self._url, self._body, self._headers, self._auth = pool, url, body, headers, auth
        self._response: WireResponse | None = None

    async def __aenter__(self) -> WireResponse:
        if self._auth is None:
            self._response = await self._send(self._headers, self._body)
            return self._response
        flow = self._auth.async_auth_flow(httpx2.Request("POST", self._url, content=self._body, headers=self._headers))
        request = await flow.__anext__()
        while True:
            response = await self._send(dict(request.headers), request.content)
            try:
                request = await flow.asend(httpx2.Response(response.status, headers=list(response.headers.items())))
            except StopAsyncIteration:
                self._response = response
                return response
            response.release()

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.release()

    async def _send(self, headers: dict[str, str], body: bytes) -> WireResponse:
        return await self._pool.post(body, headers)


def _response_message(message: Any) -> dict[str, Any]:
    """A JSON-RPC response or error object, or the SDK's verdict on anything else (a parse error)."""
    if isinstance(message, dict) and message.get("jsonrpc") == "2.0" and ("result" in message or "error" in message):
        return message
    raise MCPError(types.PARSE_ERROR, "Failed to parse JSON response: not a JSON-RPC response")


async def _events(content: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[str]:
    """The `data` of each SSE event in the chunks of `content` (comments, ids and retry hints are skipped).

    Lines are split from raw chunks, not read with `readline`, which refuses long lines: one
    event may carry a result of up to `max_bytes`.
    """
    data: list[str] = []
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in content:
        if b"\n" not in chunk:  # a long line arrives in many chunks: join them once, at its end
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size > max_bytes:
                raise _too_large(max_bytes)
            continue
        *lines, rest = b"".join([*pending, chunk]).split(b"\n")
        pending, pending_size = [rest], len(rest)
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            if not line:
                if data:
                    yield "\n".join(data)
                data, size = [], 0
                continue
            field, _, value = line.partition(":")
            if field != "data":
                continue
            value = value[1:] if value.startswith(" ") else value
            size += len(value)
            if size > max_bytes:
                raise _too_large(max_bytes)
            data.append(value)
    if data:
        yield "\n".join(data)


def _too_large(max_bytes: int) -> MCPError:
    return MCPError(
        types.CONNECTION_CLOSED, f"SSE stream failed: Server-sent event exceeded the {max_bytes} byte limit."
    )
