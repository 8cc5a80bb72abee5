"""The request path of one upstream: a caller's request through the shared session, bounded, errors typed.

Every request is refused at once while the upstream is not connected or its circuit is open, or
when a value it would carry for its caller cannot be sent (`check_request`, in the caller's own
task: whatever reaches the shared session must not be able to break it for other callers);
otherwise it is sent through the shared client session under the upstream's timeout, and whatever
goes wrong becomes one of the gateway's `UpstreamError`s naming the upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import SERVER_INFO_META_KEY
from pydantic import TypeAdapter, ValidationError

from aggregator.errors import (
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.sdk import BrokenStream, broken_response_stream
from aggregator.tracing import upstream_call
from aggregator.upstreams.breaker import CircuitBreaker
from aggregator.upstreams.failures import CONNECTION_ERRORS, describe

_ResultT = TypeVar("_ResultT")
TOOL_RESULT = TypeAdapter(types.CallToolResult | types.InputRequiredResult)
PROMPT_RESULT = TypeAdapter(types.GetPromptResult | types.InputRequiredResult)
READ_RESULT = TypeAdapter(types.ReadResourceResult | types.InputRequiredResult)
EMPTY_RESULT = TypeAdapter(types.EmptyResult)
COMPLETE_RESULT = TypeAdapter(types.CompleteResult)


class RequestPath:
    """Sends requests on one upstream's shared session; reports what it learns of the session's health.

    `on_lost(reason)` is called when a failure means the session is gone (the lifecycle then
    reconnects); `on_suspect()` when only one response stream broke (the lifecycle probes now).
    `check_request()` raises a `GatewayError` for a request whose per-caller values (identity
    headers) cannot be sent; it counts against no one but that caller.
    """

    def __init__(
        self,
        upstream: str,
        timeout: float,
        max_result_bytes: int,
        breaker: CircuitBreaker,
        *,
        per_request_streams: bool,
        on_lost: Callable[[str], None],
        on_suspect: Callable[[], None],
        on_tripped: Callable[[], None],
        check_request: Callable[[], None] | None = None,
    ) -> None:
        self.client: Client | None = None
        self.unavailable_reason = "still connecting"
        self._upstream = upstream
        self._timeout = timeout
        self._max_result_bytes = max_result_bytes
        self._breaker = breaker
        self._per_request_streams = per_request_streams
        self._on_lost = on_lost
        self._on_suspect = on_suspect
        self._on_tripped = on_tripped
        self._check_request = check_request

    async def send(
        self,
        label: str,
        request: types.ClientRequest | types.Request[Any, Any],
        result_type: TypeAdapter[_ResultT],
        progress: ProgressFnT | None = None,
    ) -> _ResultT:
        """Send one request through the shared session, bounded by the upstream's timeout."""
        client = self.client
        if client is None:
            raise UpstreamUnavailableError(self._upstream, self.unavailable_reason)
        if self._check_request is not None:
            self._check_request()
        self._breaker.check()
        try:
            with upstream_call(self._upstream, request), anyio.fail_after(self._timeout):
                # A union result (result or input request) is validated by a TypeAdapter.
                result = await client.session.send_request(request, result_type, progress_callback=progress)  # type: ignore[type-var]
        except TimeoutError:
            self._failed()
            raise UpstreamTimeoutError(self._upstream, label, self._timeout) from None
        except MCPError as error:
            raise self._error(label, error) from None
        except ValidationError:
            self._failed()
            raise UpstreamProtocolError(self._upstream, label) from None
        except CONNECTION_ERRORS as error:
            self._failed()
            reason = describe(error)
            self._on_lost(reason)
            raise UpstreamUnavailableError(self._upstream, reason) from None
        self._breaker.succeeded()
        if (size := _approximate_size(result)) > self._max_result_bytes:
            raise UpstreamProtocolError(
                self._upstream, label, f"an answer of about {size} bytes (the limit is {self._max_result_bytes})"
            )
        # The gateway answers the caller: the upstream's identity stamp must not pass as the gateway's.
        meta: Any = getattr(result, "meta", None)
        if isinstance(meta, dict):
            meta.pop(SERVER_INFO_META_KEY, None)
        return result

    def _error(self, label: str, error: MCPError) -> Exception:
        """The gateway error for an MCP error the session raised."""
        if error.code == types.CONNECTION_CLOSED:
            self._failed()
            if self._per_request_streams and (broken := broken_response_stream(error)) is not None:
                # One response stream broke, not the session: fail this call only, and probe now.
                self._on_suspect()
                return UpstreamProtocolError(self._upstream, label, self._what_broke(broken))
            self._on_lost(error.message)
            return UpstreamUnavailableError(self._upstream, error.message)
        if error.code == types.PARSE_ERROR:  # the SDK's verdict on an answer that is not JSON-RPC
            self._failed()
            return UpstreamProtocolError(self._upstream, label)
        return UpstreamRejectedError(self._upstream, error.code, error.message, error.data)

    def _what_broke(self, broken: BrokenStream) -> str:
        if broken == "too-large":
            return f"an answer over the limit of {self._max_result_bytes} bytes"
        if broken == "invalid":
            return "an invalid answer"
        return "a response stream that ended before the answer"

    def _failed(self) -> None:
        if self._breaker.failed():
            self._on_tripped()


def _approximate_size(result: object) -> int:
    """The bulk of an answer (text and binary payloads), counted without serialising it."""
    size = 0
    for block in getattr(result, "content", None) or getattr(result, "contents", None) or ():
        for field in ("text", "data", "blob"):
            value = getattr(block, field, None)
            if isinstance(value, str):
                size += len(value)
        resource = getattr(block, "resource", None)
        if resource is not None:
            size += len(getattr(resource, "text", "") or getattr(resource, "blob", "") or "")
    return size
